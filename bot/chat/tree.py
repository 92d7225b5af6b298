"""The slash commands' and the menu's tree: refuses them in a server the bot is not in."""

from __future__ import annotations

import discord
from discord import app_commands

from bot import wording_commands


class CommandTree(app_commands.CommandTree[discord.Client]):
    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """A server can offer the app's commands without the bot in it: added with the
        applications.commands scope alone, or the bot removed while its commands stayed
        (receiving-and-responding.mdx, "Authorizing Integration Owners Object": the commands'
        installation is the server's, not the bot user's membership). There the bot can read
        nothing, and discord.py makes up the interaction's server and channel without roles or
        overwrites, so the commands' privacy checks would judge a server they cannot see. The
        asker alone hears that the bot must be added."""
        guild_id = interaction.guild_id
        guild = None if guild_id is None else self.client.get_guild(guild_id)
        if guild_id is None or (guild is not None and not guild.unavailable):
            return True
        # (Unavailable, in an outage: discord.py knows none of its channels or roles yet.)
        text = (
            wording_commands.NOT_IN_SERVER if guild is None else wording_commands.UNAVAILABLE_SERVER
        )
        await interaction.response.send_message(text, ephemeral=True)
        return False
