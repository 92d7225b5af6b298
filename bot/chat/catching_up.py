"""Running the catch-up (bot.chat.history.catch_up) one at a time.

It runs after each new gateway session (a RESUME replays what was missed; a new session does
not, and Discord never replays a lost session's events) and when a server comes back from an
outage. A catch-up asked for while one runs runs once more after it, so nothing posted in
between is missed, and never two at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class CatchUps:
    def __init__(self, catch_up: Callable[[], Awaitable[int]]) -> None:
        self._catch_up = catch_up
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def start(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="glimpse-catch-up")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        again = True
        while again:
            self._again = False
            try:
                await self._catch_up()
            except Exception:  # the next new session (or start) tries again
                log.exception("catching up on the channels' history failed")
            again = self._again
