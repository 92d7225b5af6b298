"""Queued uploads whose download failed for now while the rest of their batch came through, or
whose channel the bot cannot read for now.

Each waits on its own, FIRST_WAIT_S at first and twice as long after each failure (at most
LONGEST_WAIT_S), and stays queued. The queue is taken oldest first, so one such upload (a link
preview whose site is down: the media proxy answers 5xx) used to be in every batch, and each
batch waited as in an outage, up to five minutes. When a whole batch fails, it is an outage, and
the batch waits as before (bot.index.background). Kept in memory: a restart tries them all again.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable

from bot.index.refs import ImageRef, Key

FIRST_WAIT_S = 60.0
LONGEST_WAIT_S = 3600.0


class Deferrals:
    def __init__(self) -> None:
        self._until: dict[Key, tuple[float, float]] = {}  # key: (tried again after, last wait)
        # Whose last download failed for now, deferred or in a batch that waits: a search does
        # not wait for them (they are tried again in a minute at the soonest, maybe in hours).
        self.failing: set[Key] = set()
        # In whole batches that failed one after the other: an outage, or their own trouble.
        self.suspects: set[Key] = set()

    def choose(self, queued: list[ImageRef], size: int) -> list[ImageRef]:
        """The oldest `size` of `queued`; after whole batches failed, their younger half makes
        way for the oldest uploads not in those batches. If one comes through, the trouble was
        the others' own, and they wait on their own; if not, the outage goes on. Else 16
        uploads that keep failing (previews of a site that is down) would be all that is ever
        tried, and a long run of them would be walked past one upload per outage's wait."""
        chosen = queued[:size]
        if not self.suspects or len(chosen) < size:
            return chosen
        kept = [ref for ref in chosen if ref.key in self.suspects][: size // 2]
        fresh = [ref for ref in queued if ref.key not in self.suspects]
        return [*kept, *fresh[: size - len(kept)]]

    def batch_done(self, keys: Iterable[Key], *, whole_failed: bool) -> None:
        """A batch was tried: wholly failed, its uploads are suspects, else none is."""
        if whole_failed:
            self.suspects.update(keys)
        else:
            self.suspects.clear()

    def failed(self, keys: Iterable[Key], *, defer: bool) -> None:
        """These failed for now; with `defer` each waits on its own (else their batch waits)."""
        now = time.monotonic()
        for key in keys:
            self.failing.add(key)
            if not defer:
                continue
            _, last = self._until.get(key, (0.0, FIRST_WAIT_S / 2))
            wait = min(2 * last, LONGEST_WAIT_S)
            self._until[key] = (now + wait, wait)

    def waiting(self) -> set[Key]:
        """The uploads not to be tried yet."""
        now = time.monotonic()
        return {key for key, (until, _) in self._until.items() if until > now}

    def next_in(self) -> float | None:
        """Seconds until the next one may be tried; None when none waits."""
        if not self._until:
            return None
        return max(0.0, min(until for until, _ in self._until.values()) - time.monotonic())

    def keep_only(self, queued: Collection[Key]) -> None:
        """Forgets the uploads no longer queued (indexed, dropped or deleted)."""
        self._until = {key: entry for key, entry in self._until.items() if key in queued}
        self.failing.intersection_update(queued)
        self.suspects.intersection_update(queued)
