"""`!index`, `!forget`, `!optout` and `!optin`, and the listeners that keep the index current."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord.ext import commands

from bot import wording, wording_index
from bot.chat import answers, history
from bot.chat.answers import ANYWHERE
from bot.chat.client import Glimpse
from bot.chat.people import AmbiguousName, may_name, named, person_named
from bot.chat.sources import in_ignored
from bot.errors import UserError

log = logging.getLogger(__name__)

BACKFILL_WAIT_S = 30 * 60


class Indexing(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot
        # Edits come in quick succession (a link's preview, then the author's change): one
        # handled while another waits on the database must not queue again what it took away.
        self._edits = asyncio.Lock()
        self._backfilling: set[int] = set()  # channels whose history an `!index` reads now

    @commands.command(name="forget", usage="[@member | user ID | name]", extras=ANYWHERE)
    async def forget_command(self, ctx: commands.Context[Any], *, who: str = "") -> None:
        """Remove your images (or, with Manage Messages for the server, someone's) from this
        server's index.

        Name them by mention, user ID or name; a mention or ID works after they left, too."""
        who = named(who)
        # Server-wide, as the forgetting is: one channel's overwrite granting Manage Messages
        # makes a moderator of that channel only, who may not see the others.
        author = ctx.author
        can_forget_others = isinstance(author, discord.Member) and (
            author.guild_permissions.manage_messages
        )
        # Refused before any lookup: someone without the permission learns nothing about who
        # exists, and cannot make the bot ask Discord about strangers.
        if who and not can_forget_others and not may_name(ctx.author, who):
            raise _refusal(ctx)
        prefix = self.bot.settings.command_prefix
        try:
            target = await person_named(ctx, who) if who else ctx.author
        except AmbiguousName:
            raise commands.BadArgument(wording.forget_ambiguous(prefix)) from None
        if target is None:
            raise commands.BadArgument(wording.forget_nobody(prefix))
        if target.id != ctx.author.id and not can_forget_others:
            raise _refusal(ctx)
        guild_id = ctx.guild.id if ctx.guild else None
        removed = await self.bot.index.forget_author(guild_id, target.id, ctx.message.id)
        whose = None if target.id == ctx.author.id else target.display_name
        text = wording.forgotten(removed, whose, in_server=ctx.guild is not None)
        await answers.reply(ctx, text)

    @commands.command(name="optout", extras=ANYWHERE)
    async def optout_command(self, ctx: commands.Context[Any]) -> None:
        """Remove your images from this server's index and stop indexing your uploads here."""
        guild_id = ctx.guild.id if ctx.guild else None
        removed = await self.bot.index.opt_out(guild_id, ctx.author.id)
        text = wording.opted_out(removed, in_server=ctx.guild is not None)
        await answers.reply(ctx, text)

    @commands.command(name="optin", extras=ANYWHERE)
    async def optin_command(self, ctx: commands.Context[Any]) -> None:
        """Index your uploads in this server again, from now on (after `optout`)."""
        guild_id = ctx.guild.id if ctx.guild else None
        was_out = await self.bot.index.opt_in(guild_id, ctx.author.id, ctx.message.id)
        await answers.reply(ctx, wording.opted_in(was_out, ctx.guild is not None))

    @commands.command(name="index")
    # A cog's command runs its checks in the order the decorators apply, bottom up (its copy
    # undoes the reversal Command makes): in a DM, "servers only" before "Manage Messages".
    @commands.has_permissions(manage_messages=True)
    @commands.guild_only()
    async def index_command(self, ctx: commands.Context[Any]) -> None:
        """Add this channel's earlier images to the index (up to INDEX_PER_CHANNEL)."""
        if in_ignored(ctx.channel, self.bot.settings.ignore_channels):
            raise UserError(wording_index.INDEX_IGNORED)
        if ctx.channel.id in self._backfilling:  # (a second would read it all again)
            raise UserError(wording_index.BACKFILL_RUNNING)
        self._backfilling.add(ctx.channel.id)
        try:
            await self._backfill(ctx)
        finally:
            self._backfilling.discard(ctx.channel.id)

    async def _backfill(self, ctx: commands.Context[Any]) -> None:
        bot, channel = self.bot, ctx.channel
        before = await bot.index.count([channel.id])
        progress: discord.Message | None
        progress = await ctx.reply(wording.BACKFILL_STARTED, mention_author=False)

        async def show(text: str) -> None:
            nonlocal progress
            if progress is None:
                return
            try:
                await progress.edit(content=text)
            except discord.HTTPException as exc:  # deleted, or its thread locked: goes on unseen
                log.info("cannot show the backfill's progress: %s", exc)
                progress = None

        async def report(seen: int, queued: int) -> None:
            await show(wording.backfill_progress(seen, queued))

        limit = bot.settings.index_per_channel
        seen, queued = await history.backfill(channel, bot.indexer, bot.indexable, limit, report)
        await show(wording.backfill_read(seen, queued))
        if not await bot.indexer.wait_until_done([channel.id], limit_s=BACKFILL_WAIT_S):
            waiting = await bot.index.pending_count([channel.id])
            await show(wording_index.backfill_still_indexing(waiting, seen))
            return
        # (Pruning to INDEX_PER_CHANNEL meanwhile may take more than the run added.)
        added = max(0, await bot.index.count([channel.id]) - before)
        await show(wording.backfill_done(added, seen))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        await self.bot.indexer.submit(self.bot.indexable(message))
        self.bot.catch_ups.saw(message)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.bot.indexer.drop_held({payload.message_id})
        await self.bot.index.remove_messages([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        self.bot.indexer.drop_held(payload.message_ids)
        await self.bot.index.remove_messages(payload.message_ids)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Removed images leave the index; images that appear later (unfurled links) join it;
        alt text changed by the edit is kept."""
        sources = self.bot.indexable(payload.message)
        kept = [source.ref.attachment_id for source in sources]
        async with self._edits:
            await self.bot.index.keep_only_attachments(payload.message_id, kept)
            alt_texts = {s.ref.attachment_id: s.alt_text for s in sources if not s.from_embed}
            if alt_texts:
                await self.bot.index.set_alt_texts(payload.message_id, alt_texts)
            await self.bot.indexer.submit(sources)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        self.bot.spoiler_channels.changed(channel.id)
        self.bot.catch_ups.marks.forget(channel_id=channel.id)
        await self.bot.index.remove_channel(channel.id)

    @commands.Cog.listener("on_guild_channel_update")
    async def on_channel_update(self, _before: object, after: discord.abc.GuildChannel) -> None:
        self.bot.spoiler_channels.changed(after.id)  # its flags may have changed

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        self.bot.catch_ups.marks.forget(channel_id=payload.thread_id)
        await self.bot.index.remove_channel(payload.thread_id)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.bot.catch_ups.marks.forget(guild_id=guild.id)
        await self.bot.index.remove_guild(guild.id)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """READY lists every server the bot is in, those in an outage too (gateway-events.mdx,
        "Ready"); one that removed it while it was away sends no GUILD_DELETE, and is missing."""
        for guild_id in await self.bot.index.guilds() - {guild.id for guild in self.bot.guilds}:
            self.bot.catch_ups.marks.forget(guild_id=guild_id)
            removed = await self.bot.index.remove_guild(guild_id)
            log.info("server %s removed the bot while it was away: %d image(s) gone", guild_id,
                     removed)  # fmt: skip

    # What may give the bot back a channel it lost (gateway-events.mdx; GUILD_MEMBER_UPDATE
    # arrives for the bot itself only, without the privileged members intent).
    @commands.Cog.listener("on_guild_channel_update")
    @commands.Cog.listener("on_guild_role_update")
    @commands.Cog.listener("on_guild_role_delete")
    @commands.Cog.listener("on_member_update")
    async def on_permissions_change(self, *_: object) -> None:
        self.bot.permissions_changed()


def _refusal(ctx: commands.Context[Any]) -> Exception:
    """Why `forget` may not name someone else here: a moderator of this channel only hears
    that it takes the permission for the whole server."""
    if ctx.permissions.manage_messages:
        return UserError(wording.FORGET_NEEDS_SERVER_PERMISSION)
    return commands.MissingPermissions(["manage_messages"])


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Indexing(bot))
