"""Taking automatic descriptions down: a 🗑️ on one (U+1F5D1, with or without U+FE0F) from the
poster of the message it describes or from a member with Manage Messages in that channel, the
deletion of that message, or an edit that changes its images.

The bot never adds the reaction itself, so it needs no permission to react; it reads reactions
from the gateway's raw events, which arrive whether or not the message is in discord.py's
cache, and deletes only its own messages. What it posted for whom is recorded in the index
(bot.index.described), so this works after a restart too. Any other emoji, a 🗑️ from anyone
else, or one on any other message does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import discord

from bot.chat.descriptions import Descriptions, take_down
from bot.index.described import Description
from bot.index.image_index import ImageIndex

log = logging.getLogger(__name__)

WASTEBASKET = "\U0001f5d1"
VARIATION_SELECTOR = "\ufe0f"  # asks for the emoji presentation; the same emoji either way


def is_wastebasket(emoji: discord.PartialEmoji) -> bool:
    return emoji.id is None and (emoji.name or "").replace(VARIATION_SELECTOR, "") == WASTEBASKET


class DescriptionRemoval:
    def __init__(
        self, client: discord.Client, index: ImageIndex, descriptions: Descriptions
    ) -> None:
        self.client = client
        self.index = index
        self.descriptions = descriptions

    async def reacted(self, payload: discord.RawReactionActionEvent) -> None:
        """A reaction was added somewhere the bot can see."""
        own = self.client.user
        if payload.guild_id is None or not is_wastebasket(payload.emoji):
            return
        if own is None or payload.user_id == own.id:
            return
        found = await self.index.description(payload.message_id)
        if found is None:
            return
        if payload.user_id != found.poster_id and not await self._moderates(payload):
            return
        if await self._delete(found):
            await self.index.forget_descriptions([found.description_id])

    async def deleted(self, message_ids: Collection[int]) -> bool:
        """Messages were deleted (or their images changed): the descriptions of those that had
        one go with them, posted or on their way. True if there was any."""
        dropped = self.descriptions.deleted(message_ids)
        # Each record goes once its description is gone: a bot stopped in between keeps the
        # record, and the description can still be taken down (not so the other way round).
        found = [d for m in set(message_ids) for d in await self.index.descriptions_of(m)]
        gone = [d.description_id for d in found if await self._delete(d)]  # the rest: for a 🗑️
        # (Deleted messages that were descriptions themselves go by their IDs too.)
        await self.index.forget_descriptions([*gone, *message_ids])
        return dropped or bool(found)

    async def _moderates(self, payload: discord.RawReactionActionEvent) -> bool:
        """Whether the member who reacted has Manage Messages in that channel."""
        guild = self.client.get_guild(payload.guild_id or 0)
        if payload.member is None or guild is None:
            return False
        channel = guild.get_channel_or_thread(payload.channel_id)
        try:
            if channel is None:  # an archived thread, say
                fetched = await self.client.fetch_channel(payload.channel_id)
                channel = fetched if isinstance(fetched, discord.Thread) else None
            return channel is not None and channel.permissions_for(payload.member).manage_messages
        except (discord.HTTPException, discord.ClientException) as exc:
            log.info("cannot check permissions in channel %s: %s", payload.channel_id, exc)
            return False

    async def _delete(self, found: Description) -> bool:
        channel = self.client.get_partial_messageable(found.channel_id, guild_id=found.guild_id)
        return await take_down(channel.get_partial_message(found.description_id))
