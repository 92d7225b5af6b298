"""Where a catch-up can stop reading each channel: the newest message the bot has seen there.

The bot sees every message of a channel it can read as it is posted, so after downtime it need
only read what came after the newest one it saw, and a channel where no image was indexed yet
is caught up on like any other. Marks are held here and written by `bot.chat.catching_up`
only when no unread stretch lies below them.
"""

from __future__ import annotations

from collections.abc import Collection

import discord

from bot.index.image_index import ImageIndex
from bot.index.store import ReadMark


class ReadMarks:
    def __init__(self, index: ImageIndex, ignored: Collection[int]) -> None:
        self._index = index
        self._ignored = frozenset(ignored)
        self._held: dict[int, ReadMark] = {}

    def saw(self, message: discord.Message) -> None:
        """The message was handled (its images queued), live or read by a catch-up."""
        if message.guild is None:  # DMs are never caught up on
            return
        channel = message.channel
        parent_id = getattr(channel, "parent_id", None)
        if {channel.id, parent_id} & self._ignored:
            return
        held = self._held.get(channel.id)
        if held is None or held[3] < message.id:
            self._held[channel.id] = (channel.id, message.guild.id, parent_id, message.id)

    def take(self) -> list[ReadMark]:
        """The marks held so far; those seen from now on are held for the next take."""
        marks, self._held = list(self._held.values()), {}
        return marks

    async def write(self, marks: list[ReadMark]) -> None:
        if marks:
            await self._index.mark_read(marks)
