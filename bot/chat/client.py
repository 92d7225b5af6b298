"""The Discord client: given its resources by `bot.app.main`; loads the cogs, reports errors."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.cooldowns import MemberCooldown
from bot.chat.replies import user_message
from bot.chat.sources import ImageSource, image_sources
from bot.config import Settings
from bot.health import HEARTBEAT_FILE, Heartbeat
from bot.images.fetcher import MediaFetcher
from bot.index.background import Indexer
from bot.index.store import ImageIndex, ImageRef
from bot.vision.service import VisionService
from bot.workers import Workers

log = logging.getLogger(__name__)

# Loaded in this order; the first failure stops the start.
EXTENSIONS = ("cogs.caption", "cogs.search", "cogs.admin")


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True  # privileged: enable it in the developer portal
    return wanted


class Glimpse(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        vision: VisionService,
        index: ImageIndex,
        workers: Workers,
        fetcher: MediaFetcher,
        **options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned_or(settings.command_prefix),
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=commands.DefaultHelpCommand(dm_help=False),
            owner_ids=set(settings.owner_ids) or None,
            **options,
        )
        self.settings = settings
        self.vision = vision
        self.index = index
        self.workers = workers
        self.fetcher = fetcher
        self.cooldown = MemberCooldown(settings.cooldown)
        self.indexer = Indexer(index, vision, workers, fetcher, self.resolve_image)
        self.heartbeat = Heartbeat(self, workers, settings.data_dir / HEARTBEAT_FILE)
        self._caught_up = False

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.tree.error(self.on_app_command_error)
        self.indexer.start()
        self.heartbeat.start()

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("connected as %s (%s) to %d server(s)", self.user, self.user.id, len(self.guilds))
        if not self._caught_up:  # on_ready fires again after every reconnect
            self._caught_up = True
            self.loop.create_task(self.catch_up(), name="glimpse-catch-up")

    async def catch_up(self) -> None:
        """Queues images posted while the bot was down, in every channel already indexed."""
        channels = await self.workers.run("db", self.index.channels)
        queued = 0
        for _guild_id, channel_id in channels:
            channel = self.get_channel(channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                continue
            last = await self.workers.run("db", self.index.last_message_id, channel_id)
            after = discord.Object(last) if last else None
            try:
                async for message in channel.history(
                    limit=self.settings.index_per_channel, after=after, oldest_first=True
                ):
                    queued += await self.indexer.submit(self.indexable_sources(message))
            except discord.HTTPException as exc:
                log.info("cannot catch up on channel %s: %s", channel_id, exc)
        if queued:
            log.info("queued %d image(s) posted while the bot was offline", queued)

    def indexable_sources(self, message: discord.Message) -> list[ImageSource]:
        """What the index takes from a message: not the bot's own, not other bots', webhooks yes."""
        if message.author.bot and message.webhook_id is None:
            return []
        channel_ids = {message.channel.id, getattr(message.channel, "parent_id", None)}
        if channel_ids & self.settings.ignore_channels:
            return []
        return image_sources(message, self.fetcher.allowed_hosts)

    async def message_of(self, ref: ImageRef) -> discord.Message | None:
        """The message an index entry points at, fetched afresh (its image URLs expire); None
        when the channel holds no messages. Raises discord.NotFound or discord.Forbidden."""
        channel = self.get_channel(ref.channel_id) or await self.fetch_channel(ref.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return None
        return await channel.fetch_message(ref.message_id)

    async def resolve_image(self, ref: ImageRef) -> ImageSource | None:
        """A fresh URL for a queued image (URLs are never stored), or None if it is gone."""
        try:
            message = await self.message_of(ref)
        except (discord.NotFound, discord.Forbidden):
            return None
        if message is None:
            return None
        for source in image_sources(message, self.fetcher.allowed_hosts):
            if source.ref.attachment_id == ref.attachment_id:
                return source
        return None

    async def on_command_error(
        self, ctx: commands.Context[Any], error: commands.CommandError
    ) -> None:
        if isinstance(error, commands.CommandNotFound):
            return
        await ctx.reply(_reply_for(error, ctx.command), mention_author=False)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        text = _reply_for(error, interaction.command)
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)

    async def close(self) -> None:
        await self.heartbeat.stop()
        await self.indexer.stop()
        await super().close()


def _reply_for(error: Exception, command: object) -> str:
    """What the user reads; an error that is our bug is logged once, with its traceback."""
    text = user_message(error)
    if text is None:
        log.error("command %s failed", command, exc_info=getattr(error, "original", error))
        text = "Something went wrong on my side; the admins can find the details in the log."
    return text
