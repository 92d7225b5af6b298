"""`!alttext on|off`, and the listeners that describe images posted without alt text where it
is on, and take descriptions down (a 🗑️ from the poster or a moderator, the original deleted)."""

from __future__ import annotations

from typing import Any

import discord
from discord.ext import commands

from bot import wording
from bot.chat.alt_text_lines import undescribed
from bot.chat.client import Glimpse
from bot.chat.descriptions import covered
from bot.chat.reposts import root_of


class AltText(commands.Cog, name="Alt text"):  # its heading in `help`
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    @commands.command(name="alttext", usage="[on|off]")
    @commands.guild_only()
    async def alt_text_command(self, ctx: commands.Context[Any], state: str = "") -> None:
        """Describe images posted without alt text in this channel (and its threads): `on` or
        `off` (needs Manage Messages); alone, says whether it is on."""
        assert ctx.guild is not None
        channel, index = root_of(ctx.channel), self.bot.index
        mention = f"<#{channel}>"
        state = state.lower()
        if not state:
            text = wording.alt_text_state(mention, index.describes_images(channel))
        elif state not in ("on", "off"):
            raise commands.BadArgument(wording.ALT_TEXT_USAGE)
        elif not ctx.permissions.manage_messages:
            raise commands.MissingPermissions(["manage_messages"])
        else:
            changed = await index.set_alt_text(ctx.guild.id, channel, state == "on")
            if state == "on":
                text = wording.alt_text_on(mention, already=not changed)
            else:
                text = wording.alt_text_off(mention, was_on=changed)
        await ctx.reply(text, mention_author=False)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        descriptions = self.bot.descriptions
        if not descriptions.watched(message.channel):
            return
        own_id = self.bot.user.id if self.bot.user else None
        sources = undescribed(message, own_id, self.bot.fetcher.allowed_hosts)
        if sources and not await self.bot.is_command(message):
            descriptions.posted(message, sources)  # a command is a query, not a post

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edit that changes a described message's images (one removed, alt text or a spoiler
        cover added) takes its description down, which could describe a picture no longer there
        or show what is now covered; what is still without alt text is described anew."""
        own_id = self.bot.user.id if self.bot.user else None
        if payload.message.author.id == own_id:
            return  # (a description itself: its rows match its own ID too)
        hosts = self.bot.fetcher.allowed_hosts
        sources = undescribed(payload.message, own_id, hosts)
        now = covered(sources)
        before = payload.cached_message
        if before is not None:  # not when only the words changed, or a link preview came
            changed = covered(undescribed(before, own_id, hosts)) != now
        else:  # not in the cache (after a restart, or long after): what was described
            posted = await self.bot.index.descriptions_of(payload.message_id)
            known = [d.covered for d in posted]
            if (coming := self.bot.descriptions.on_the_way(payload.message_id)) is not None:
                known.append(coming)  # not recorded yet
            # (one posted by an older version, which kept no covers: only if left bare)
            changed = any(not now if c is None else c != now for c in known)
        if not changed or not await self.bot.description_removal.deleted([payload.message_id]):
            return
        if sources and self.bot.descriptions.watched(payload.message.channel):
            self.bot.descriptions.posted(payload.message, sources)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.bot.description_removal.reacted(payload)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.bot.description_removal.deleted([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self.bot.description_removal.deleted(payload.message_ids)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(AltText(bot))
