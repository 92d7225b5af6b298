"""Running the catch-up (bot.chat.history.catch_up) one at a time, and writing its read marks.

It runs after each new gateway session (a RESUME replays what was missed; a new session does
not, and Discord never replays a lost session's events) and when a server comes back from an
outage. A catch-up asked for while one runs runs once more after it, so nothing posted in
between is missed, and never two at once.

A read mark (bot.chat.read_marks) says that nothing below it is left unread, so marks are
written only while that holds: not from a new session's start until its catch-up has read
what the session missed, nor while a catch-up runs. A mark lost (a crash, say) only makes the
next catch-up read further back. A catch-up that Discord failed on leaves its start behind
(`Unread`): the next one reads down to what was known below it, not down to uploads seen live
since, which lie above what it failed to read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import discord

from bot.chat.history import CatchUpIncomplete, Unread
from bot.chat.permissions import can_read
from bot.chat.read_marks import ReadMarks
from bot.index.store import ReadMark

log = logging.getLogger(__name__)

WRITE_EVERY_S = 60.0
RETRY_S = 60.0  # after a catch-up that failed (Discord unreachable, say)
RETRY_CAP_S = 3600.0  # the longest wait for a channel Discord keeps failing on


# Given the snowflake of the moment it was asked for, the servers to read (None: all), and what
# earlier ones left unread.
CatchUp = Callable[[int, frozenset[int] | None, Unread], Awaitable[int]]
# Given the server that came back (None: all of them), the newest message no event brought.
NewestUnheard = Callable[[int | None], int | None]


def newest_unheard(guilds: Iterable[discord.Guild], heard: Iterable[discord.Message]) -> int | None:
    """The newest of the servers' messages that Discord names as a readable channel's last (as
    GUILD_CREATE lists them) and that no event brought: posted before the session began.
    Its ID holds Discord's time of it (reference.mdx, "Snowflakes"), which a host whose clock
    runs behind Discord's would read as still to come. (A channel the bot cannot read brings
    no events, and the catch-up does not read it: its newest says nothing of the session.)"""
    known = {message.id for message in heard}
    channels = [
        channel
        for guild in guilds
        if guild.me is not None
        for channel in (*guild.channels, *guild.threads)
        if can_read(channel, guild.me)
    ]
    lasts: list[int | None] = [getattr(channel, "last_message_id", None) for channel in channels]
    return max((last for last in lasts if last is not None and last not in known), default=None)


class CatchUps:
    def __init__(
        self, catch_up: CatchUp, marks: ReadMarks, unheard: NewestUnheard = lambda _: None
    ) -> None:
        self._catch_up = catch_up
        self.marks = marks
        self._unheard = unheard
        self._task: asyncio.Task[None] | None = None
        self._again_before: int | None = None
        self._again_guilds: frozenset[int] | None = None
        self._unread = True  # a session began and its catch-up was not asked for yet
        self._session_start: int | None = None  # its READY, as a snowflake
        self._writing: asyncio.Task[None] | None = None
        self._written_at = time.monotonic()
        self._retry: asyncio.TimerHandle | None = None
        self._retrying = False
        # Just above the newest message Discord named that no event brought: where a catch-up
        # reads up to at least (the host's clock may run behind Discord's).
        self._floor = 0
        self._tries = 0  # catch-ups in a row that Discord failed on for some channels
        self._left = Unread()
        self._closed = False

    def new_session(self) -> None:
        """A new gateway session began (READY): what was posted since the last one is unread.
        The marks held until now are below that, so they are written first."""
        self._write_marks()
        self._unread = True
        # From READY on, messages arrive as events, those of the seconds before on_ready too
        # (discord.py dispatches them while it waits for the servers): an image posted then
        # must not count as where the catch-up stops reading.
        self._session_start = discord.utils.time_snowflake(discord.utils.utcnow())

    def start(self, guild_id: int | None = None) -> None:
        """Asked for at the start of a session, or with `guild_id` when that server comes back
        from an outage (only its channels missed anything): what is posted from now on
        arrives as events."""
        if self._closed:
            return
        now = discord.utils.time_snowflake(discord.utils.utcnow())
        if self._session_start is not None:  # the session's own catch-up: from its READY
            now, self._session_start = min(now, self._session_start), None
        # While a session's catch-up is still owed, every server's channels are read.
        guilds = None if guild_id is None or self._unread else frozenset({guild_id})
        if not self._retrying:  # (a retry reads up to what the start it retries judged)
            # Up to what was posted before, on Discord's clock, where the host's runs behind.
            unheard = self._unheard(None if guilds is None else guild_id)
            self._floor = self._floor if unheard is None else max(self._floor, unheard + 1)
        now = max(now, self._floor)
        self._unread = False  # the catch-up asked for now reads it
        if guilds is None and self._retry is not None:  # it reads all a retry would
            self._retry.cancel()
            self._retry = None
        if self._running():
            if self._again_before is None:  # the earliest start not yet caught up on
                self._again_before, self._again_guilds = now, guilds
            elif guilds is None or self._again_guilds is None:
                self._again_guilds = None
            else:
                self._again_guilds |= guilds
            return
        self._task = asyncio.create_task(self._run(now, guilds), name="glimpse-catch-up")

    def saw(self, message: discord.Message) -> None:
        """A message posted live was handled; its mark is written within WRITE_EVERY_S, or at
        once if it is the first seen in its channel (a process killed before a channel's first
        mark is written would never catch up on it)."""
        if self._closed:
            return
        first = self.marks.saw(message)
        if first or time.monotonic() - self._written_at >= WRITE_EVERY_S:
            self._write_marks()

    async def close(self) -> None:
        """Stops a catch-up that runs; the marks are written if nothing is left unread, and
        none after this."""
        self._write_marks()
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._task is not None:
            self._task.cancel()
        for task in (self._task, self._writing):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)

    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _write_marks(self) -> None:
        if self._closed or self._unread or self._running():
            return
        self._written_at = time.monotonic()
        # Taken now: a mark seen later may lie above a stretch not yet read.
        marks = self.marks.take()
        self._writing = asyncio.create_task(self._write(marks, self._writing))

    async def _write(self, marks: list[ReadMark], earlier: asyncio.Task[None] | None) -> None:
        if earlier is not None:
            await asyncio.gather(earlier, return_exceptions=True)
        try:
            await self.marks.write(marks)
        except Exception:  # held again: until written, catch-ups read them from memory
            self.marks.put_back(marks)
            log.exception("writing the channels' read marks failed")

    async def _run(self, before: int, guilds: frozenset[int] | None) -> None:
        if self._writing is not None:  # the marks it starts from
            await asyncio.gather(self._writing, return_exceptions=True)
        again: int | None = before
        failed = incomplete = False
        while again is not None:
            try:
                await self._catch_up(again, guilds, self._left)
                if guilds is None:  # a full one read all that a failed one would
                    failed = incomplete = False
                    self._left = Unread()
            except CatchUpIncomplete as exc:  # the rest was read; those channels' marks wait
                incomplete = True
                self._left = self._left_by(again, guilds, exc.channel_ids)
                log.warning("%s", exc)
            except Exception:
                failed = True
                self._left.everywhere = min(again, self._left.everywhere or again)
                log.exception("catching up on the channels' history failed")
            again, guilds, self._again_before = self._again_before, self._again_guilds, None
        self._task = None
        if failed:  # what it missed stays unread: no mark is written above it
            self._unread = True
            self._retry_in(RETRY_S)
        elif incomplete:  # less often each time: a channel may fail for long
            self._tries += 1
            self._retry_in(min(RETRY_S * 2 ** (self._tries - 1), RETRY_CAP_S))
        else:
            self._tries = 0
        if not failed and not self._unread:  # everything up to the session's start is read
            self._write_marks()

    def _left_by(self, before: int, guilds: frozenset[int] | None, channels: list[int]) -> Unread:
        """What is left unread after a catch-up from `before` that Discord failed on for
        `channels`: a full one read the rest of what was left."""
        left = self._left
        if guilds is not None:
            return Unread(left.everywhere, {c: before for c in channels} | left.channels)
        return Unread(None, {c: left.below(before, c) for c in channels})

    def _retry_in(self, delay: float) -> None:
        log.info("catching up again in %d s", delay)
        if self._retry is not None:
            self._retry.cancel()
        self._retry = asyncio.get_running_loop().call_later(delay, self._start_again)

    def _start_again(self) -> None:
        self._retrying = True
        try:
            self.start()
        finally:
            self._retrying = False
