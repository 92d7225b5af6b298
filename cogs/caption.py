"""`!caption` and `/caption` (one hybrid command), and the "Caption image" context menu."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import wording
from bot.chat import answers
from bot.chat.captions import (
    LINK,
    CannotReadChannel,
    NoHistory,
    NoImage,
    NoImageInMessage,
    NoPreview,
    NoSharedHistory,
    previewed_links,
    started_from,
    without_links,
)
from bot.chat.client import Glimpse
from bot.chat.cooldowns import spends_budget
from bot.chat.find_syntax import unquoted
from bot.chat.hybrid import hybrid_command
from bot.chat.permissions import audience_reads_history, reads_history
from bot.chat.sources import attachment_source, replied_sources

# At most a message's length: on `/caption` the option's `max_length` (application-commands.mdx,
# "Application Command Option Structure"), on `!caption` a check of the words given.
PROMPT_MAX = 2000


class Caption(commands.Cog):
    def __init__(self, bot: Glimpse) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Caption image", callback=self.caption_menu)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @spends_budget
    @hybrid_command(name="caption", usage="[prompt words]", description="Caption an image")
    @app_commands.describe(
        image="the image to caption (default: the latest image in this channel)",
        prompt="words the caption should start with",
    )
    async def caption_command(
        self,
        ctx: commands.Context[Any],
        image: discord.Attachment | None = None,
        *,
        prompt: commands.Range[str, None, PROMPT_MAX] = "",
    ) -> None:
        """Caption the attached images, the replied-to message's, or the channel's latest."""
        await answers.defer(ctx.interaction)
        captions = self.bot.captions
        if ctx.interaction is None:
            # Its own images (with its other files after them, so that a wrong kind of file
            # hears why), else the replied-to message's images, else the files.
            hosts = self.bot.fetcher.allowed_hosts
            sources = captions.sources_in(ctx.message, every_attachment=True)
            if not captions.sources_in(ctx.message):
                replied = await replied_sources(ctx.message, hosts)
                sources = replied or sources
            if not sources:
                sources = await replied_sources(ctx.message, hosts, every_attachment=True)
            if not sources and LINK.search(prompt):
                # The image is behind a link, not the channel's latest one, nor the prompt.
                if previewed_links(prompt):
                    sources = await captions.preview_sources(self.bot, ctx.message)
                if not sources:
                    raise NoPreview
        else:
            sources = [attachment_source(ctx.interaction, image)] if image else []
            if not sources and LINK.search(prompt):
                raise NoPreview  # an option's link has no preview: nothing shows its image
        prompt = unquoted(without_links(prompt).strip())  # quoted as `!find` takes words
        note = ""
        if not sources:
            if not reads_history(ctx.channel, ctx.author):
                raise NoHistory  # the latest image is earlier history, hidden from the asker
            if not self.bot.access.can_read(ctx.channel.id):
                raise CannotReadChannel  # a slash command works where the bot cannot read
            if not audience_reads_history(ctx.channel):
                raise NoSharedHistory  # and hidden from some who would read the answer
            before = ctx.message if ctx.interaction is None else None
            found = await captions.latest_image(ctx.channel, before)
            if found is None:
                raise NoImage
            message, sources = found
            note = wording.latest_image_note(message.jump_url)
        async with ctx.typing():
            text = await captions.caption(sources, prompt.strip() or None, note)
        await answers.reply(ctx, text)

    @spends_budget
    async def caption_menu(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        # Every file, as `!caption` takes them: a PDF hears why it cannot be captioned.
        captions = self.bot.captions
        sources = captions.sources_in(message, every_attachment=True)
        # The asker's alone where some who see the channel could not see that message.
        private = not audience_reads_history(interaction.channel)
        if not sources and message.type is discord.MessageType.thread_starter_message:
            await answers.defer(interaction, private=private)  # first a fetch from the thread
            if (started := await started_from(message)) is not None:
                message, sources = started, captions.sources_in(started, every_attachment=True)
        if not sources:
            raise NoImageInMessage
        if not interaction.response.is_done():
            await answers.defer(interaction, private=private)
        note = wording.menu_source_note(message.jump_url)
        text = await captions.caption(sources, None, note)
        await answers.respond(interaction, text, private=private)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, Glimpse)
    await bot.add_cog(Caption(bot))
