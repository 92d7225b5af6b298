"""Spoiler channels: members opt in to see their contents (channel.mdx, "Channel Flags",
IS_SPOILER_CHANNEL), so their images count as spoilers wherever else they are shown.

discord.py keeps no flags for text or voice channels, so each channel is asked about once over
REST (Get Channel) and remembered until it changes, or until the bot reconnects (a change
made meanwhile came as no event).
"""

from __future__ import annotations

import logging

import aiohttp
import discord

log = logging.getLogger(__name__)

IS_SPOILER_CHANNEL = 1 << 21


class SpoilerChannels:
    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._known: dict[int, bool] = {}

    async def covered(self, channel_id: int) -> bool:
        """Whether the channel (a thread's parent, for a thread) is a spoiler channel; when
        Discord cannot say, covered, and asked again next time."""
        if channel_id not in self._known:
            try:
                data = await self.client.http.get_channel(channel_id)
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("cannot tell whether channel %s is a spoiler channel: %s", channel_id, exc)
                return True
            flags = data.get("flags")
            self._known[channel_id] = isinstance(flags, int) and bool(flags & IS_SPOILER_CHANNEL)
        return self._known[channel_id]

    def clear(self) -> None:
        """A new connection: changes made meanwhile reached the bot as no event."""
        self._known.clear()

    def changed(self, channel_id: int) -> None:
        """The channel was updated or deleted: asked about again when next needed."""
        self._known.pop(channel_id, None)
