"""`!reposts on|off`, and the listeners that point out reposts where it is on."""

from __future__ import annotations

from typing import Any

import discord
from discord.ext import commands

from bot import wording, wording_index
from bot.chat.client import Glimpse
from bot.chat.reposts import root_of
from bot.chat.sources import in_ignored
from bot.errors import UserError


class RepostChecks(commands.Cog, name="Reposts"):  # its heading in `help`
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    @commands.command(name="reposts", usage="[on|off]")
    @commands.guild_only()
    async def reposts_command(self, ctx: commands.Context[Any], state: str = "") -> None:
        """Point out images posted in this channel (and its threads) before: `on` or `off`
        (needs Manage Messages); alone, says whether it is on."""
        assert ctx.guild is not None
        channel, index = root_of(ctx.channel), self.bot.index
        mention = f"<#{channel}>"
        state = state.lower()
        if not state:
            text = wording.reposts_state(mention, index.checks_reposts(channel))
        elif state not in ("on", "off"):
            raise commands.BadArgument(wording.REPOSTS_USAGE)
        elif not ctx.permissions.manage_messages:
            raise commands.MissingPermissions(["manage_messages"])
        elif state == "on" and in_ignored(ctx.channel, self.bot.settings.ignore_channels):
            raise UserError(wording_index.REPOSTS_IGNORED)
        elif state == "on":
            changed = await index.set_reposts(ctx.guild.id, channel, True)
            text = wording.reposts_on(mention, self.bot.settings.repost_min_score, not changed)
        else:
            changed = await index.set_reposts(ctx.guild.id, channel, False)
            text = wording.reposts_off(mention, changed)
        await ctx.reply(text, mention_author=False)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.bot.reposts.watched(message.channel):
            return
        if await self.bot.is_command(message):
            return  # a command is a query, not a post
        await self.bot.reposts.posted(message)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        await self.bot.reposts.edited(payload.message)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.bot.reposts.deleted([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self.bot.reposts.deleted(payload.message_ids)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(RepostChecks(bot))
