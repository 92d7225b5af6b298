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
        if guild_id is None or self.client.get_guild(guild_id) is not None:
            return True
        await interaction.response.send_message(wording_commands.NOT_IN_SERVER, ephemeral=True)
        return False
