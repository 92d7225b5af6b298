"""`!sync`: publishes the slash commands. Never done on start (Discord rate-limits it)."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from bot import wording
from bot.chat.client import Glimpse


class Admin(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot

    @commands.command(name="sync")
    @commands.is_owner()
    async def sync_command(self, ctx: commands.Context[Any], where: str = "global") -> None:
        """Sync slash commands: `sync` (everywhere, may take a while to show) or `sync here`."""
        if where == "here" and ctx.guild is not None:
            self.bot.tree.copy_global_to(guild=ctx.guild)
            synced = await self.bot.tree.sync(guild=ctx.guild)
            everywhere = False
        else:
            synced = await self.bot.tree.sync()
            everywhere = True
        text = wording.synced(len(synced), everywhere, sorted(c.name for c in synced))
        await ctx.reply(text, mention_author=False)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Admin(bot))
