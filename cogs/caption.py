"""`!caption`, `/caption` and the "Caption image" context menu."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.captions import NoImage, caption_sources, latest_image, latest_note, sources_in
from bot.chat.client import Glimpse
from bot.chat.sources import ImageSource


class Caption(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Caption image", callback=self.caption_menu)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @commands.command(name="caption", usage="[prompt words]")
    async def caption_command(self, ctx: commands.Context[Any], *, prompt: str = "") -> None:
        """Caption the attached images, the replied-to message's, or the channel's latest."""
        self.bot.cooldown.check(ctx.guild.id if ctx.guild else None, ctx.author.id)
        fetcher = self.bot.fetcher
        sources = sources_in(ctx.message, fetcher, every_attachment=True)
        note = ""
        if not sources and ctx.message.reference is not None:
            sources = await self._replied_sources(ctx.message)
        if not sources:
            found = await latest_image(ctx.channel, fetcher, before=ctx.message)
            if found is None:
                raise NoImage
            message, sources = found
            note = latest_note(message)
        async with ctx.typing():
            text = await caption_sources(fetcher, sources, prompt.strip() or None)
        await ctx.reply(text + note, mention_author=False)

    async def _replied_sources(self, message: discord.Message) -> list[ImageSource]:
        reference = message.reference
        assert reference is not None
        target = reference.resolved
        if not isinstance(target, discord.Message) and reference.message_id:
            try:
                target = await message.channel.fetch_message(reference.message_id)
            except discord.NotFound:
                return []
        if not isinstance(target, discord.Message):
            return []
        return sources_in(target, self.bot.fetcher)

    @app_commands.command(name="caption", description="Caption an image")
    @app_commands.describe(
        image="the image to caption (default: the latest image in this channel)",
        prompt="words the caption should start with",
    )
    async def caption_slash(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        prompt: str | None = None,
    ) -> None:
        self.bot.cooldown.check(interaction.guild_id, interaction.user.id)
        await interaction.response.defer(thinking=True)
        fetcher = self.bot.fetcher
        note = ""
        if image is not None:
            sources = [_attachment_source(interaction, image)]
        else:
            channel = interaction.channel
            found = None
            if isinstance(channel, discord.abc.Messageable):
                found = await latest_image(channel, fetcher, before=None)
            if found is None:
                raise NoImage
            message, sources = found
            note = latest_note(message)
        text = await caption_sources(fetcher, sources, prompt)
        await interaction.followup.send(text + note)

    async def caption_menu(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        self.bot.cooldown.check(interaction.guild_id, interaction.user.id)
        sources = sources_in(message, self.bot.fetcher)
        if not sources:
            raise NoImage
        await interaction.response.defer(thinking=True)
        text = await caption_sources(self.bot.fetcher, sources, None)
        await interaction.followup.send(f"{text}\n-# {message.jump_url}")


def _attachment_source(
    interaction: discord.Interaction, attachment: discord.Attachment
) -> ImageSource:
    from bot.index.store import ImageRef

    ref = ImageRef(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        message_id=interaction.id,
        attachment_id=attachment.id,
        author_id=interaction.user.id,
        created_at=interaction.created_at.timestamp(),
    )
    return ImageSource(ref, attachment.url, attachment.filename, attachment.size)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Caption(bot))
