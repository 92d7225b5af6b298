"""`!find` and `/find`: one hybrid command."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from bot.chat import answers
from bot.chat.client import Glimpse
from bot.chat.cooldowns import spends_budget
from bot.chat.find_syntax import FindOptions, no_query
from bot.chat.hybrid import hybrid_command

# `!find` with nothing after it: the same answer as an empty query.
NO_QUERY = commands.parameter(default=no_query)


class Search(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    @spends_budget
    @hybrid_command(
        name="find",
        usage='"a photo of parrots" [top: 1-10] [scope: channel|server]',
        description="Find the best-matching recent image",
    )
    async def find_command(
        self,
        ctx: commands.Context[Any],
        *,
        options: FindOptions = NO_QUERY,
    ) -> None:
        """Find the best-matching recent image in this channel (or the whole server)."""
        request = options.request()
        finder = self.bot.finder
        # A slash command can answer privately, so images from other channels may be shown.
        private = ctx.interaction is not None and request.scope == "server"
        # A public reply shows this channel's results only; the asker gets the rest by DM.
        split = not private and request.scope == "server" and ctx.guild is not None
        await ctx.defer(ephemeral=private)
        scope = await finder.scope(request, ctx.channel, ctx.author)
        async with ctx.typing():
            here = {ctx.channel.id} if split else scope
            reply = await finder.find(request, here, ctx.channel.id, private=private)
            if split:
                everything = await finder.find(request, scope, ctx.channel.id, private=True)
                reply = await answers.copy_by_dm(ctx.author, reply, everything)
        await answers.reply(ctx, reply.content, reply.embeds, private=private)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Search(bot))
