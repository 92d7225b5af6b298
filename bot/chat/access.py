"""What the bot itself can read, so that index entries it cannot show cost no requests.

discord.py keeps the bot's own permissions current from the gateway (overwrites arrive by
CHANNEL_UPDATE, roles by GUILD_ROLE_UPDATE and GUILD_ROLE_DELETE, the bot's roles by
GUILD_MEMBER_UPDATE: gateway-events.mdx), so a channel it holds is judged without asking
Discord. A channel it does not hold (an archived thread, say) is tried once; a 403 is
remembered until the next permission change, so a lost channel costs one request, not one per
search.
"""

from __future__ import annotations

import logging

import discord

from bot.chat.permissions import ArchivedThread, can_read
from bot.index.image_index import ImageIndex

log = logging.getLogger(__name__)

UNKNOWN_CHANNEL = 10003  # opcodes-and-status-codes.mdx, "JSON Error Codes"


class ReadAccess:
    def __init__(self, client: discord.Client, index: ImageIndex) -> None:
        self._client = client
        self._index = index
        self._refused: set[int] = set()
        # Archived threads the bot fetched once: a thread's type and parent never change.
        self._archived: dict[int, ArchivedThread] = {}

    def can_read(self, channel_id: int) -> bool:
        if channel_id in self._refused:
            return False
        channel = self._client.get_channel(channel_id)
        if isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            me = channel.guild.me
            return me is None or can_read(channel, me)
        return True  # not in the cache: Discord's answer will tell

    def refused(self, channel_id: int) -> None:
        """Discord answered 403 for this channel: skip it until permissions change."""
        if channel_id not in self._refused:
            log.info("no access to channel %s; its images are skipped until that changes",
                     channel_id)  # fmt: skip
            self._refused.add(channel_id)

    def permissions_changed(self) -> None:
        self._refused.clear()

    async def gone(self, channel_id: int, error: discord.NotFound) -> bool:
        """After a 404 on a channel's message: True (and its entries removed) if it was the
        channel that is gone rather than the message."""
        if error.code != UNKNOWN_CHANNEL:
            return False
        await self._index.remove_channel(channel_id)
        self._archived.pop(channel_id, None)
        return True

    async def archived_threads(
        self, guild: discord.Guild, under: int | None = None
    ) -> list[ArchivedThread]:
        """The guild's threads (`under` one channel: its own) that hold indexed images but are
        missing from discord.py's cache, which drops a thread once it is archived. Only those
        of channels the bot can read: it can read no thread of one it cannot, and asking would
        be refused (403, counted towards the invalid-request limit)."""
        me = guild.me
        parents = [
            channel.id
            for channel in guild.channels
            if (under is None or channel.id == under) and (me is None or can_read(channel, me))
        ]
        found: list[ArchivedThread] = []
        for thread_id, _parent_id in await self._index.threads_under(parents):
            if guild.get_thread(thread_id) is not None or thread_id in self._refused:
                continue
            thread = self._archived.get(thread_id) or await self._fetch_thread(thread_id)
            if thread is not None:
                self._archived[thread_id] = thread
                found.append(thread)
        return found

    async def _fetch_thread(self, thread_id: int) -> ArchivedThread | None:
        try:
            channel = await self._client.fetch_channel(thread_id)
        except discord.NotFound:
            await self._index.remove_channel(thread_id)
            return None
        except discord.Forbidden:
            self.refused(thread_id)
            return None
        except discord.DiscordServerError as exc:  # for now: left out, and asked for next time
            log.info("cannot look up archived thread %s: %s", thread_id, exc)
            return None
        if not isinstance(channel, discord.Thread) or channel.parent_id is None:
            return None
        return ArchivedThread(thread_id, channel.parent_id, channel.is_private())
