"""`find`: rank the indexed images the asker may see, and build the reply's embeds."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.chat.find_syntax import FindRequest
from bot.chat.permissions import server_scope
from bot.chat.sources import image_sources
from bot.index.store import Hit

if TYPE_CHECKING:
    from discord.abc import MessageableChannel

    from bot.chat.client import Glimpse

log = logging.getLogger(__name__)

PENDING_WAIT_S = 5.0
EMPTY_INDEX = (
    "I have no images indexed here yet. I index every image posted in channels I can read "
    "from the moment I join; a moderator can run `index` to add this channel's history."
)


@dataclass(frozen=True)
class Reply:
    content: str
    embeds: list[discord.Embed]


def search_scope(
    request: FindRequest, channel: MessageableChannel, asker: discord.abc.User
) -> set[int]:
    """This channel only, or every channel the asking member can read now."""
    if (
        request.scope == "server"
        and isinstance(asker, discord.Member)
        and isinstance(channel, discord.abc.GuildChannel | discord.Thread)
    ):
        return server_scope(asker, channel)
    return {channel.id}


async def find(
    bot: Glimpse, request: FindRequest, scope: set[int], origin_id: int, *, private: bool
) -> Reply:
    """`private`: only the asker sees the reply, so images from other channels may be shown."""
    await bot.indexer.wait_until_done(scope, PENDING_WAIT_S)
    query = (await bot.vision.embed_text([request.query]))[0]
    # A few spares, in case some of the best have been deleted since they were indexed.
    hits = await bot.workers.run("db", bot.index.search, query, scope, request.top + 3)
    if not hits:
        return Reply(EMPTY_INDEX, [])
    embeds: list[discord.Embed] = []
    for hit in hits:
        message = await _fetch(bot, hit)
        if message is None:
            continue
        show_all = private or hit.ref.channel_id == origin_id
        embeds.append(_embed(bot, hit, message, show_all, len(embeds) + 1))
        if len(embeds) == request.top:
            break
    if not embeds:
        return Reply(EMPTY_INDEX, [])
    return Reply("", embeds)


async def _fetch(bot: Glimpse, hit: Hit) -> discord.Message | None:
    """The original message (image URLs expire, so it is fetched afresh); drops vanished ones."""
    try:
        return await bot.message_of(hit.ref)
    except discord.NotFound:
        await bot.workers.run("db", bot.index.remove_messages, [hit.ref.message_id])
    except discord.Forbidden:
        log.info("no access to channel %s any more", hit.ref.channel_id)
    return None


def _embed(
    bot: Glimpse, hit: Hit, message: discord.Message, show_all: bool, rank: int
) -> discord.Embed:
    weak = hit.score < bot.settings.weak_match_below
    score = f"score {hit.score:.2f}" + (" · weak match" if weak else "")
    embed = discord.Embed(title=f"#{rank} · {score}", url=message.jump_url)
    if not show_all:
        # Shown in another channel's public reply: the link only; Discord checks access on click.
        embed.description = message.jump_url
        return embed
    embed.description = f"Posted by {message.author.mention}: {message.jump_url}"
    embed.set_author(name=message.author.display_name)
    for source in image_sources(message, bot.fetcher.allowed_hosts):
        if source.ref.attachment_id == hit.ref.attachment_id:
            embed.set_image(url=source.url)
            break
    return embed
