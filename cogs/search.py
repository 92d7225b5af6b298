"""`!find` and `/find`: one hybrid command."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from bot import wording
from bot.chat import answers
from bot.chat.client import Glimpse
from bot.chat.cooldowns import spends_budget
from bot.chat.find_syntax import FindOptions, no_query
from bot.chat.hybrid import hybrid_command
from bot.chat.sources import attachment_source, example_source
from bot.images.fetcher import ImageSource

# `!find` with nothing after it: images like an attached (or replied-to) one, or an error.
NO_QUERY = commands.parameter(default=no_query)


class Search(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    @spends_budget
    @hybrid_command(
        name="find",
        usage='"a photo of parrots" [top: 1-10] [scope: channel|server], or an image',
        description="Find the best-matching recent image, by words or by an example image",
    )
    async def find_command(
        self,
        ctx: commands.Context[Any],
        *,
        options: FindOptions = NO_QUERY,
    ) -> None:
        """Find the best-matching recent image in this channel (or the whole server); with no
        words, images like the one attached or replied to."""
        request = options.request()
        finder = self.bot.finder
        # A slash command can answer privately, so images from other channels may be shown.
        private = ctx.interaction is not None and request.scope == "server"
        # A public reply shows this channel's results only; the asker gets the rest by DM.
        split = not private and request.scope == "server" and ctx.guild is not None
        await answers.defer(ctx.interaction, private=private)
        scope = await finder.scope(request, ctx.channel, ctx.author)
        if not scope:  # before an example image is fetched and embedded for nothing
            # A refusal, as the error handler's: the asker's alone where that can be.
            await answers.reply(ctx, wording.NO_HISTORY, private=ctx.interaction is not None)
            return
        async with ctx.typing():
            example = None if request.query else await self._example(ctx, options)
            query = await finder.query(request, example, scope)
            # Only what the asker may read here, even in a reply everyone sees.
            here = {ctx.channel.id} & scope if split else scope
            if split:  # the wider search first: the asker waits once for pending work
                wider = await finder.scope(request, ctx.channel, ctx.author, by_dm=True)
                everything = await finder.find(query, wider, ctx.channel, private=True)
                reply = await finder.find(query, here, ctx.channel, private=False, wait=False)
                reply = await answers.copy_by_dm(ctx.author, reply, everything)
            else:
                reply = await finder.find(query, here, ctx.channel, private=private)
        await answers.reply(ctx, reply.content, reply.embeds, private=private)

    async def _example(
        self, ctx: commands.Context[Any], options: FindOptions
    ) -> ImageSource | None:
        """The slash command's image option, or the text command's first image (its own, else
        the replied-to message's)."""
        if ctx.interaction is not None:
            image = options.image
            return attachment_source(ctx.interaction, image) if image is not None else None
        return await example_source(ctx.message, self.bot.fetcher.allowed_hosts)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Search(bot))
