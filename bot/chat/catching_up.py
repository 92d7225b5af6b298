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

import discord

log = logging.getLogger(__name__)


class CatchUps:
    def __init__(self, catch_up: Callable[[int], Awaitable[int]]) -> None:
        self._catch_up = catch_up  # given the snowflake of the moment it was asked for
        self._task: asyncio.Task[None] | None = None
        self._again_before: int | None = None

    def start(self) -> None:
        """Asked for at the start of a session: what is posted from now on arrives as events."""
        now = discord.utils.time_snowflake(discord.utils.utcnow())
        if self._task is not None and not self._task.done():
            if self._again_before is None:  # the earliest start not yet caught up on
                self._again_before = now
            return
        self._task = asyncio.create_task(self._run(now), name="glimpse-catch-up")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self, before: int) -> None:
        again: int | None = before
        while again is not None:
            try:
                await self._catch_up(again)
            except Exception:  # the next new session (or start) tries again
                log.exception("catching up on the channels' history failed")
            again, self._again_before = self._again_before, None
