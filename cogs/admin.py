"""`!sync`: publishes the slash commands. Never done on start (Discord rate-limits it)."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from bot import wording
from bot.chat.client import Glimpse


class Admin(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    @commands.command(name="sync", usage="[here|clear]")
    @commands.is_owner()
    async def sync_command(self, ctx: commands.Context[Any], form: str = "") -> None:
        """Publish the slash commands: `sync` (every server, may take a while to show),
        `sync here` (this server only, at once) or `sync clear` (remove this server's copies)."""
        form, tree, guild = form.lower(), self.bot.tree, ctx.guild
        if form not in ("", "here", "clear"):
            raise commands.BadArgument(wording.SYNC_USAGE)
        if not form:
            synced = await tree.sync()
            text = wording.synced(len(synced), True, sorted(c.name for c in synced))
        elif guild is None:  # a DM: no server to publish to, or to clear
            raise commands.BadArgument(wording.sync_needs_server(form))
        elif form == "here":
            tree.copy_global_to(guild=guild)
            synced = await tree.sync(guild=guild)
            text = wording.synced(len(synced), False, sorted(c.name for c in synced))
        else:
            # `sync here`'s copies stay in the server after a global `sync`, which then shows
            # each command twice there: this removes them (an empty list for the server).
            tree.clear_commands(guild=guild)
            await tree.sync(guild=guild)
            text = wording.SYNC_CLEARED
        await ctx.reply(text, mention_author=False)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Admin(bot))
