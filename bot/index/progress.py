"""What background indexing has done: counts, and a periodic line in the log that sums them up."""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger(__name__)

SUMMARY_EVERY_S = 600.0  # read at each use, so a test can scale it


class Progress:
    """Images indexed and dropped (by reason) since the last summary line."""

    def __init__(self) -> None:
        self.indexed = 0
        self.dropped: Counter[str] = Counter()
        self._last = time.monotonic()

    def dropped_for(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] += count

    def log_summary(self, pending: int, *, force: bool = False) -> None:
        """One INFO line every SUMMARY_EVERY_S while anything happened, and when forced (at
        shutdown); then the counts start again."""
        due = time.monotonic() - self._last >= SUMMARY_EVERY_S
        if not (force or due) or not (self.indexed or self.dropped or pending):
            return
        dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items()))
        log.info(
            "indexing: %d image(s) indexed, %d pending, %d dropped%s",
            self.indexed,
            pending,
            sum(self.dropped.values()),
            f" ({dropped})" if dropped else "",
        )
        self.indexed = 0
        self.dropped.clear()
        self._last = time.monotonic()
