"""`!find`, `/find`, `!forget`, `!index`, and the listeners that keep the index current."""

from __future__ import annotations

from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.client import Glimpse
from bot.chat.find_syntax import make_request, parse_find
from bot.chat.search import find, search_scope

BACKFILL_PROGRESS_EVERY = 100


class Search(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    # -- commands ------------------------------------------------------------------------

    @commands.command(name="find", usage='"a photo of parrots" [top: 1-10] [scope: channel|server]')
    async def find_command(self, ctx: commands.Context[Any], *, text: str = "") -> None:
        """Find the best-matching recent image in this channel (or the whole server)."""
        request = parse_find(text)
        self.bot.cooldown.check(ctx.guild.id if ctx.guild else None, ctx.author.id)
        scope = search_scope(request, ctx.channel, ctx.author)
        async with ctx.typing():
            reply = await find(self.bot, request, scope, ctx.channel.id, private=False)
        await ctx.reply(reply.content or None, embeds=reply.embeds, mention_author=False)

    @app_commands.command(name="find", description="Find the best-matching recent image")
    @app_commands.describe(
        query="what to look for, e.g. a photo of parrots",
        top="how many results (1-10)",
        scope="this channel, or every channel you can read (answered privately)",
    )
    async def find_slash(
        self,
        interaction: discord.Interaction,
        query: str,
        top: app_commands.Range[int, 1, 10] = 1,
        scope: Literal["channel", "server"] = "channel",
    ) -> None:
        request = make_request(query, top, scope)
        self.bot.cooldown.check(interaction.guild_id, interaction.user.id)
        private = request.scope == "server"
        await interaction.response.defer(thinking=True, ephemeral=private)
        channel = interaction.channel
        assert channel is not None and not isinstance(
            channel, discord.ForumChannel | discord.CategoryChannel
        )
        scope_ids = search_scope(request, channel, interaction.user)
        reply = await find(self.bot, request, scope_ids, channel.id, private=private)
        await interaction.followup.send(reply.content or "", embeds=reply.embeds, ephemeral=private)

    @commands.command(name="forget", usage="[@member]")
    async def forget_command(
        self, ctx: commands.Context[Any], member: discord.Member | None = None
    ) -> None:
        """Remove your images (or, with Manage Messages, a member's) from this server's index."""
        target = member or ctx.author
        if target.id != ctx.author.id and not ctx.permissions.manage_messages:
            raise commands.MissingPermissions(["manage_messages"])
        guild_id = ctx.guild.id if ctx.guild else None
        removed = await self.bot.workers.run(
            "db", self.bot.index.forget_author, guild_id, target.id
        )
        whose = "your" if target.id == ctx.author.id else f"{target.display_name}'s"
        where = "this server's" if ctx.guild else "this conversation's"
        await ctx.reply(
            f"Removed {removed} of {whose} image{'s' if removed != 1 else ''} from {where} index.",
            mention_author=False,
        )

    @commands.command(name="index")
    @commands.guild_only()
    @commands.has_permissions(manage_messages=True)
    async def index_command(self, ctx: commands.Context[Any]) -> None:
        """Add this channel's earlier images to the index (up to INDEX_PER_CHANNEL)."""
        bot, channel = self.bot, ctx.channel
        before = await bot.workers.run("db", bot.index.count, [channel.id])
        progress = await ctx.reply("Reading this channel's history…", mention_author=False)
        seen = queued = 0
        async for message in channel.history(limit=bot.settings.index_per_channel):
            seen += 1
            queued += await bot.indexer.submit(bot.indexable_sources(message))
            if seen % BACKFILL_PROGRESS_EVERY == 0:
                await progress.edit(content=f"Read {seen} messages, {queued} new images queued…")
        await progress.edit(content=f"Read {seen} messages; indexing {queued} new images…")
        await bot.indexer.wait_until_done([channel.id], limit_s=30 * 60)
        added = await bot.workers.run("db", bot.index.count, [channel.id]) - before
        await progress.edit(
            content=f"Done: added {added} image{'s' if added != 1 else ''} from {seen} messages."
        )

    # -- listeners -----------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        await self.bot.indexer.submit(self.bot.indexable_sources(message))

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.bot.workers.run("db", self.bot.index.remove_messages, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self.bot.workers.run("db", self.bot.index.remove_messages, list(payload.message_ids))

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Removed images leave the index; images that appear later (unfurled links) join it."""
        sources = self.bot.indexable_sources(payload.message)
        kept = [source.ref.attachment_id for source in sources]
        await self.bot.workers.run(
            "db", self.bot.index.keep_only_attachments, payload.message_id, kept
        )
        await self.bot.indexer.submit(sources)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self.bot.workers.run("db", self.bot.index.remove_channel, channel.id)

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        await self.bot.workers.run("db", self.bot.index.remove_channel, payload.thread_id)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.bot.workers.run("db", self.bot.index.remove_guild, guild.id)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Search(bot))
