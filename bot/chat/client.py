"""The Discord client: given its resources by `bot.app`, it loads the cogs and reports errors."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat import answers, history
from bot.chat.access import ReadAccess
from bot.chat.captions import Captions
from bot.chat.catching_up import CatchUps, newest_unheard
from bot.chat.cooldowns import MemberCooldown, spends
from bot.chat.description_removal import DescriptionRemoval
from bot.chat.descriptions import Descriptions
from bot.chat.fitting import clip
from bot.chat.fresh_urls import FreshUrls
from bot.chat.pacing import PERIOD_S, POSTS_PER_PERIOD, ChannelPace
from bot.chat.permissions import may_reply
from bot.chat.read_marks import ReadMarks
from bot.chat.replies import ours, reply_for
from bot.chat.reposts import Reposts
from bot.chat.search import Finder
from bot.chat.sources import indexable_sources
from bot.chat.spoiler_channels import SpoilerChannels
from bot.chat.tree import CommandTree
from bot.config import Settings
from bot.health import HEARTBEAT_FILE, Heartbeat
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef
from bot.markdown import as_typed
from bot.vision.service import VisionService

log = logging.getLogger(__name__)

# Loaded in this order, through discord.py's extension loader; the first failure stops the start.
EXTENSIONS = (
    "cogs.caption",
    "cogs.search",
    "cogs.indexing",
    "cogs.reposts",
    "cogs.alt_text",
    "cogs.admin",
)


def intents() -> discord.Intents:
    # message_content is privileged: enable it in the developer portal. guild_reactions is
    # GUILD_MESSAGE_REACTIONS (1 << 10), for MESSAGE_REACTION_ADD (a 🗑️ on a description): a
    # standard intent, not among the privileged ones, so there is nothing to switch on
    # (gateway.mdx, "List of Intents" and "Privileged Intents").
    return discord.Intents(
        guilds=True,
        guild_messages=True,
        guild_reactions=True,
        dm_messages=True,
        message_content=True,
    )


# Slash commands and the menu are offered in servers and in DMs with the bot, never as a
# user-installed app nor in group DMs, where the bot can read nothing (application-commands.mdx,
# "Contexts"). Left unset, they follow the portal's installation settings.
SLASH_COMMAND_PLACES: dict[str, Any] = {
    "allowed_contexts": app_commands.AppCommandContext(
        guild=True, dm_channel=True, private_channel=False
    ),
    "allowed_installs": app_commands.AppInstallationType(guild=True, user=False),
}


def _quiet_voice_warnings() -> None:
    # discord.py warns at every start that voice libraries are missing; the bot has no voice
    # feature, so the warning only alarms the admin. These flags are its warn-once.
    for flag in ("warn_nacl", "warn_dave"):
        setattr(discord.VoiceClient, flag, False)


class Glimpse(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        vision: VisionService,
        index: ImageIndex,
        fetcher: MediaFetcher,
        **options: Any,
    ) -> None:
        _quiet_voice_warnings()
        super().__init__(
            command_prefix=commands.when_mentioned_or(settings.command_prefix),
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            # `usage` as the signature, not each parameter by its Python name, described as
            # "No description given"
            help_command=Help(dm_help=False, show_parameter_descriptions=False, no_category="Help"),
            case_insensitive=True,  # phones capitalise a message's first word: `!Caption`
            tree_cls=CommandTree,
            owner_ids=set(settings.owner_ids) or None,
            **SLASH_COMMAND_PLACES,
            **options,
        )
        self.settings = settings
        self.vision = vision
        self.index = index
        self.fetcher = fetcher
        self.cooldown = MemberCooldown(settings.cooldown)
        self.access = ReadAccess(self, index)
        fresh_urls = FreshUrls(self, self.access, fetcher.allowed_hosts)
        self.indexer = Indexer(index, vision, fetcher, fresh_urls.resolve)
        self.captions = Captions(vision, fetcher)
        self.spoiler_channels = SpoilerChannels(self)
        self.finder = Finder(
            index,
            self.indexer,
            vision,
            fetcher,
            self.message_of,
            self.access,
            self.spoiler_channels,
            settings.weak_match_below,
        )
        self._add_own_posts(settings, vision, fetcher)
        self.heartbeat = Heartbeat(self, vision.ping, settings.data_dir / HEARTBEAT_FILE)
        marks = ReadMarks(self.indexer, settings.ignore_channels)
        self.catch_ups = CatchUps(self._catch_up, marks, self._newest_unheard)
        self._session_ready = False  # the session's own guilds all known (its on_ready ran)
        self._heard_before = 0  # the newest message heard before this session
        self._mute_channels: set[int] = set()  # told the admin once that it cannot answer there

    def _add_own_posts(
        self, settings: Settings, vision: VisionService, fetcher: MediaFetcher
    ) -> None:
        """What the bot posts unasked, reposts pointed out and descriptions: one share of each
        channel's message budget for both, so that answers to commands never wait behind them."""
        pace = ChannelPace(POSTS_PER_PERIOD, PERIOD_S)
        self.reposts = Reposts(
            self.indexer,
            self.access,
            self.message_of,
            self.indexable,
            settings.repost_min_score,
            pace,
            fetcher.allowed_hosts,
            self.is_command,
        )
        self.descriptions = Descriptions(
            vision, fetcher, self.indexer, self.indexable, settings.alt_text_max_pending, pace
        )
        self.description_removal = DescriptionRemoval(self, self.index, self.descriptions)

    async def setup_hook(self) -> None:
        self.add_check(self._may_answer_here)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.tree.error(self.on_app_command_error)
        if ignored := await self.index.remove_ignored(self.settings.ignore_channels):
            log.info("removed %d image(s) of channels in IGNORE_CHANNELS", ignored)
        self.indexer.start()
        self.heartbeat.start()

    async def on_connect(self) -> None:
        self._session_ready = False
        # What was heard before this session: what the message cache gains from now on is its.
        self._heard_before = max((m.id for m in self.cached_messages), default=0)
        self.catch_ups.new_session()
        self.spoiler_channels.clear()

    async def on_resumed(self) -> None:
        self._session_ready = True

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("connected as %s (%s) to %d server(s)", self.user, self.user.id, len(self.guilds))
        self._session_ready = True
        self.catch_ups.start()  # after each new session too: see bot.chat.catching_up

    async def on_guild_available(self, guild: discord.Guild) -> None:
        # A guild in an outage at READY comes later; its channels were unknown to the catch-up.
        # Before on_ready, the guilds of the session arrive this way too: on_ready covers them.
        if self._session_ready:
            log.info("server %s is available again; catching up", guild.id)
            self.spoiler_channels.clear()
            self.catch_ups.start(guild.id)

    def _newest_unheard(self, guild_id: int | None) -> int | None:
        """Never at or above a message heard in this session: one deleted since, or a server
        that arrived late, may name a newer last message that no event brought."""
        guilds = [g for g in self.guilds if guild_id is None or g.id == guild_id]
        newest = newest_unheard(guilds, self.cached_messages)
        heard = [m.id for m in self.cached_messages if m.id > self._heard_before]
        return newest if newest is None or not heard else min(newest, min(heard) - 1)

    async def _catch_up(
        self, before: int, guilds: frozenset[int] | None, unread: history.Unread
    ) -> int:
        limit, marks = self.settings.index_per_channel, self.catch_ups.marks
        return await history.catch_up(
            self, self.access, self.indexer, self.indexable, limit, before, marks, guilds, unread
        )

    def indexable(self, message: discord.Message) -> list[ImageSource]:
        """The images of a message that the index takes (see `indexable_sources`); none from a
        member who opted out there, or posted while out."""
        guild_id = message.guild.id if message.guild else None
        if self.index.keeps_out(guild_id, message.author.id, message.id):
            return []
        own_id = self.user.id if self.user else None
        ignored, hosts = self.settings.ignore_channels, self.fetcher.allowed_hosts
        return indexable_sources(message, ignored, hosts, own_id)

    async def is_command(self, message: discord.Message) -> bool:
        """One of this bot's commands, with its prefix: a query, not a post."""
        return (await self.get_context(message)).valid

    async def message_of(self, ref: ImageRef) -> discord.Message | None:
        return await history.message_of(self, ref)

    def permissions_changed(self) -> None:
        """A channel, role or the bot's roles changed: what it can read and where it may
        answer are judged afresh (and a channel where it may not is told of again)."""
        self.access.permissions_changed()
        self._mute_channels.clear()

    async def _may_answer_here(self, ctx: commands.Context[Any]) -> bool:
        """A text command is run only where its reply can be posted: each post Discord refuses
        (403) counts towards its invalid-request limit, and the error reply would be a second."""
        if ctx.interaction is not None or ctx.guild is None:
            return True
        if may_reply(ctx.channel):
            self._mute_channels.discard(ctx.channel.id)  # so that a later loss is told again
            return True
        if answers.runs_anywhere(ctx.command):
            return True
        raise CannotAnswerHere

    async def on_command_error(
        self, ctx: commands.Context[Any], error: commands.CommandError
    ) -> None:
        if isinstance(error, commands.CommandNotFound):
            return
        original = getattr(error, "original", None)
        if isinstance(original, discord.HTTPException) and answers.command_deleted(original):
            log.info("command message %s was deleted before its answer", ctx.message.id)
            return  # its error reply would be refused the same way
        if isinstance(error, CannotAnswerHere):
            if ctx.channel.id not in self._mute_channels:
                self._mute_channels.add(ctx.channel.id)
                log.warning(
                    "commands in channel %s go unanswered: the bot needs Send Messages (in a "
                    "thread: Send Messages in Threads) and Read Message History there",
                    ctx.channel.id,
                )
            return
        if ours(error) and spends(ctx.command):
            self.cooldown.give_back(ctx.guild.id if ctx.guild else None, ctx.author.id)
        # A slash command's error is shown to the asker only, as discord.py's own errors are.
        private = ctx.interaction is not None
        await answers.reply(ctx, reply_for(error, ctx.command), private=private)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if ours(error) and spends(interaction.command):
            self.cooldown.give_back(interaction.guild_id, interaction.user.id)
        await answers.respond(interaction, reply_for(error, interaction.command), private=True)

    async def close(self) -> None:
        await self.catch_ups.close()
        await self.heartbeat.stop()
        await self.descriptions.close()
        await self.indexer.stop()
        await super().close()


class Help(commands.DefaultHelpCommand):
    """discord.py's help, its answer to `help WORD` for no such command shown as typed (it
    repeats the word: a masked link there would be the bot's) and clipped (a reply over
    Discord's 2000 characters is refused)."""

    def command_not_found(self, string: str, /) -> str:
        return super().command_not_found(as_typed(string))

    async def send_error_message(self, error: str, /) -> None:
        await super().send_error_message(clip(error))


class CannotAnswerHere(commands.CheckFailure):
    """The bot may not reply in this channel; the command is dropped unanswered."""
