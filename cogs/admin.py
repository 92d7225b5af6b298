"""`!sync`: publishes the slash commands. Never done on start (Discord rate-limits it)."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord.ext import commands

from bot import wording
from bot.chat.client import Glimpse
from bot.errors import UserError

# discord.py sleeps through a 429's whole Retry-After, and Discord's limit of 200 command
# creates a day (application-commands.mdx, "Registering a Command") can make that hours.
SYNC_WAIT_S = 60.0


class Admin(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    @commands.command(name="sync", usage="[here|clear]")
    @commands.is_owner()
    async def sync_command(self, ctx: commands.Context[Any], *, form: str = "") -> None:
        """Publish the slash commands: `sync` (every server, may take a while to show),
        `sync here` (this server only, at once) or `sync clear` (remove this server's copies)."""
        form = form.strip().lower()  # the whole rest: `sync here please` is no `sync here`
        if form not in ("", "here", "clear"):
            raise commands.BadArgument(wording.SYNC_USAGE)
        try:
            async with asyncio.timeout(SYNC_WAIT_S):
                text = await self._sync(form, ctx.guild)
        except TimeoutError:
            raise UserError(wording.SYNC_HELD) from None
        await ctx.reply(text, mention_author=False)

    async def _sync(self, form: str, guild: discord.Guild | None) -> str:
        tree = self.bot.tree
        if not form:
            synced = await tree.sync()
            return wording.synced(len(synced), True, sorted(c.name for c in synced))
        if guild is None:  # a DM: no server to publish to, or to clear
            raise commands.BadArgument(wording.sync_needs_server(form))
        if form == "here":
            tree.copy_global_to(guild=guild)
            synced = await tree.sync(guild=guild)
            return wording.synced(len(synced), False, sorted(c.name for c in synced))
        # `sync here`'s copies stay in the server after a global `sync`, which then shows each
        # command twice there: this removes them (an empty list for the server).
        tree.clear_commands(guild=guild)
        await tree.sync(guild=guild)
        return wording.SYNC_CLEARED


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Admin(bot))
