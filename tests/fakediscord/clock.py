"""The test server's clock: the wall clock plus whatever a test has skipped ahead.

Everything on Discord's side that depends on time reads it here: snowflakes and timestamps,
interaction tokens (valid 15 minutes), signed attachment URLs (``ex``), threads archiving after
``auto_archive_duration`` minutes of inactivity. ``FakeDiscord.advance(seconds)`` moves it and
then lets those effects happen. Rate limits use the real monotonic clock instead, because
discord.py really sleeps for them.
"""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Seconds since the Unix epoch, as Discord's servers would read them."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds

    def iso(self, at: float | None = None) -> str:
        """ISO-8601 with the UTC offset, the form Discord gives timestamps."""
        return dt.datetime.fromtimestamp(self.now() if at is None else at, dt.UTC).isoformat()
