"""`find`: rank the indexed images the asker may see, and build the reply's embeds."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot import wording
from bot.chat.find_syntax import FindRequest
from bot.chat.permissions import server_scope
from bot.chat.sources import source_for
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import Hit, ImageRef
from bot.vision.service import VisionService

if TYPE_CHECKING:
    from discord.abc import MessageableChannel

log = logging.getLogger(__name__)

PENDING_WAIT_S = 5.0
SPARE_HITS = 3  # in case some of the best have been deleted since they were indexed

Locate = Callable[[ImageRef], Awaitable[discord.Message | None]]


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


class Finder:
    def __init__(
        self,
        index: ImageIndex,
        indexer: Indexer,
        vision: VisionService,
        locate: Locate,
        allowed_hosts: frozenset[str],
        weak_below: float,
    ) -> None:
        self.index = index
        self.indexer = indexer
        self.vision = vision
        self.locate = locate
        self.allowed_hosts = allowed_hosts
        self.weak_below = weak_below

    async def find(
        self, request: FindRequest, scope: set[int], origin_id: int, *, private: bool
    ) -> Reply:
        """`private`: only the asker sees the reply, so images from other channels may be shown."""
        await self.indexer.wait_until_done(scope, PENDING_WAIT_S)
        query = (await self.vision.embed_text([request.query]))[0]
        hits = await self.index.search(query, scope, request.top + SPARE_HITS)
        embeds: list[discord.Embed] = []
        for hit in hits:
            message = await self._fetch(hit)
            if message is None:
                continue
            show_all = private or hit.ref.channel_id == origin_id
            embeds.append(self._embed(hit, message, show_all, len(embeds) + 1))
            if len(embeds) == request.top:
                break
        if not embeds:
            return Reply(wording.EMPTY_INDEX, [])
        return Reply("", embeds)

    async def _fetch(self, hit: Hit) -> discord.Message | None:
        """The original message (image URLs expire, so it is fetched afresh); drops vanished
        ones from the index."""
        try:
            return await self.locate(hit.ref)
        except discord.NotFound:
            await self.index.remove_messages([hit.ref.message_id])
        except discord.Forbidden:
            log.info("no access to channel %s any more", hit.ref.channel_id)
        return None

    def _embed(
        self, hit: Hit, message: discord.Message, show_all: bool, rank: int
    ) -> discord.Embed:
        title = wording.result_title(rank, hit.score, weak=hit.score < self.weak_below)
        if not show_all:
            # In another channel's public reply: the link only; Discord checks access on click.
            return discord.Embed(title=title, url=message.jump_url, description=message.jump_url)
        posted = wording.posted_by(message.author.mention, message.jump_url)
        embed = discord.Embed(title=title, url=message.jump_url, description=posted)
        embed.set_author(name=message.author.display_name)
        source = source_for(message, hit.ref.attachment_id, self.allowed_hosts)
        if source is not None:
            embed.set_image(url=source.url)
        return embed
