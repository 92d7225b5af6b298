"""Where a catch-up can stop reading each channel: the newest message the bot has seen there.

The bot sees every message of a channel it can read as it is posted, so after downtime it need
only read what came after the newest one it saw, and a channel where no image was indexed yet
is caught up on like any other. Marks are held here and written by `bot.chat.catching_up`
only when no unread stretch lies below them; a channel that a catch-up could not read keeps
its marks held until one does.
"""

from __future__ import annotations

from collections.abc import Iterable

import discord

from bot.chat.sources import in_ignored
from bot.index.background import Indexer
from bot.index.store import ReadMark


class ReadMarks:
    def __init__(self, indexer: Indexer, ignored: Iterable[int]) -> None:
        self._indexer = indexer
        self._ignored = frozenset(ignored)
        self._held: dict[int, ReadMark] = {}
        self._unread: set[int] = set()  # channels the last catch-up could not read
        self._first: dict[int, ReadMark] = {}  # the first message handled in each, here

    def saw(self, message: discord.Message) -> bool:
        """The message was handled (its images queued), live or read by a catch-up; True if
        it is the first of its channel that this process handled."""
        if message.guild is None:  # DMs are never caught up on
            return False
        channel = message.channel
        if self.ignores(channel):
            return False
        mark = (channel.id, message.guild.id, getattr(channel, "parent_id", None), message.id)
        self._hold(mark)
        return self._first.setdefault(channel.id, mark) is mark

    def ignores(self, channel: object) -> bool:
        """In IGNORE_CHANNELS (a thread, by its parent): never read, never marked."""
        return in_ignored(channel, self._ignored)

    def first(self, channel_id: int) -> int | None:
        """Where a channel without a written mark is read down to: what came before the bot
        first saw it there is history, which only `!index` reads."""
        first = self._first.get(channel_id)
        return None if first is None else first[3]

    def read(self, channel_id: int, newest: discord.Message | None) -> None:
        """A catch-up read the channel, down to where it stops, up to `newest` (None: nothing
        was posted since)."""
        self._unread.discard(channel_id)
        if newest is not None:
            self.saw(newest)

    def unread(self, channel_id: int) -> None:
        """A catch-up could not read the channel: its marks wait for one that can."""
        self._unread.add(channel_id)

    def held(self) -> dict[int, int]:
        """{channel_id: guild_id} of the marks not written yet, which a catch-up reads too."""
        return {channel: guild for channel, guild, _, _ in self._held.values()}

    def forget(self, channel_id: int | None = None, guild_id: int | None = None) -> None:
        """A channel (and its threads) or a server is gone: its marks are not written."""

        def kept(mark: ReadMark) -> bool:
            channel_gone = channel_id is not None and channel_id in (mark[0], mark[2])
            return not channel_gone and (guild_id is None or guild_id != mark[1])

        self._held = {channel: mark for channel, mark in self._held.items() if kept(mark)}
        self._first = {channel: mark for channel, mark in self._first.items() if kept(mark)}
        if channel_id is not None:
            self._unread.discard(channel_id)

    def take(self) -> list[ReadMark]:
        """The marks that may be written now; the rest, and those seen from now on, stay.
        None while uploads wait in memory for the database: a mark written above them, then a
        restart, would lose them."""
        if self._indexer.holding:
            return []
        taken = [mark for channel, mark in self._held.items() if channel not in self._unread]
        self._held = {c: mark for c, mark in self._held.items() if c in self._unread}
        return taken

    def put_back(self, marks: Iterable[ReadMark]) -> None:
        """Marks whose write failed: held again, for the next write."""
        for mark in marks:
            self._hold(mark)

    async def write(self, marks: list[ReadMark]) -> None:
        if marks:
            await self._indexer.index.mark_read(marks)

    def _hold(self, mark: ReadMark) -> None:
        held = self._held.get(mark[0])
        if held is None or held[3] < mark[3]:
            self._held[mark[0]] = mark
