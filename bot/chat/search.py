"""`find`: rank the indexed images the asker may see, and build the reply's embeds.

A query is a text, or an example image (its frames' embeddings; the image itself and any file
identical to it are never among the results); a text's results are fused with what the images'
alt texts say (bot.index.ranking).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
import numpy as np

from bot import wording
from bot.chat.access import ReadAccess
from bot.chat.find_syntax import FindRequest, FindSyntaxError
from bot.chat.permissions import audience_reads_history, reads_history, server_scope
from bot.chat.sources import lost_image, source_for, unsigned
from bot.chat.spoiler_channels import SpoilerChannels
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.index.alt_text import Terms, query_terms
from bot.index.background import Indexer
from bot.index.embedding import embed_frames
from bot.index.image_index import ImageIndex
from bot.index.ranking import Excluded
from bot.index.refs import Hit, ImageRef
from bot.vision.scores import COSINE, TextScores
from bot.vision.service import VisionService

if TYPE_CHECKING:
    from discord.abc import MessageableChannel

log = logging.getLogger(__name__)

PENDING_WAIT_S = 5.0

Locate = Callable[[ImageRef], Awaitable[discord.Message | None]]


def fetch_budget(top: int) -> int:
    """Messages one search may fetch while passing over results that cannot be shown."""
    return 3 * top + 10


@dataclass(frozen=True)
class Reply:
    content: str
    embeds: list[discord.Embed]


@dataclass(frozen=True)
class Query:
    """What a search ranks by: a text's embedding, or an example image's, one row per frame."""

    vectors: np.ndarray
    top: int
    weak_below: float  # on the number shown
    scores: TextScores = COSINE  # what the number shown is: a text's by the model's family
    terms: Terms = ()  # a text's words, for alt text
    excluded: Excluded | None = None  # an example image, never among its own results


class Finder:
    def __init__(
        self,
        index: ImageIndex,
        indexer: Indexer,
        vision: VisionService,
        fetcher: MediaFetcher,
        locate: Locate,
        access: ReadAccess,
        spoilers: SpoilerChannels,
        weak_below: float | None,
    ) -> None:
        self.index = index
        self.indexer = indexer
        self.vision = vision
        self.fetcher = fetcher
        self.locate = locate
        self.access = access
        self.spoilers = spoilers
        self.allowed_hosts = fetcher.allowed_hosts
        self.weak_below = weak_below  # None: the search model family's default

    async def scope(
        self,
        request: FindRequest,
        channel: MessageableChannel,
        asker: discord.abc.User,
        *,
        by_dm: bool = False,
    ) -> set[int]:
        """This channel only, or every channel the asking member can read now, archived
        threads included (`by_dm`: not age-restricted ones); empty when the asker may not read
        this channel's history."""
        if (
            request.scope == "server"
            and isinstance(asker, discord.Member)
            and isinstance(channel, discord.abc.GuildChannel | discord.Thread)
        ):
            archived = await self.access.archived_threads(asker.guild)
            return server_scope(asker, channel, archived, by_dm=by_dm)
        return {channel.id} if reads_history(channel, asker) else set()

    async def query(
        self, request: FindRequest, example: ImageSource | None, scope: set[int]
    ) -> Query:
        """The request's text; without one, the example image (raises FindSyntaxError when
        there is none, ImageError or DownloadError when it cannot be used). An example indexed
        in `scope` already is not embedded again; one indexed elsewhere is, so that the answer's
        time says nothing of channels the asker may not read."""
        if request.query:
            vector = await self.vision.embed_text([request.query])
            scores = await self.vision.text_scores()
            weak = await self._weak_below()
            return Query(vector, request.top, weak, scores, query_terms(request.query))
        if example is None:
            raise FindSyntaxError(wording.QUERY_MISSING)
        decoded = await self.fetcher.fetch(example)
        vectors = await self.index.embedding_for_hash(decoded.digest, scope)
        if vectors is None:
            (vectors,) = await embed_frames(self.vision, [decoded.frames])
        excluded = Excluded(example.ref.key, decoded.digest)
        # WEAK_MATCH_BELOW is on a text's scale; two pictures' cosine is not, so no label.
        return Query(vectors, request.top, -math.inf, excluded=excluded)

    async def _weak_below(self) -> float:
        """WEAK_MATCH_BELOW, or the search model family's default."""
        if self.weak_below is not None:
            return self.weak_below
        return (await self.vision.text_scores()).weak_below

    async def find(
        self,
        query: Query,
        scope: set[int],
        origin: MessageableChannel,
        *,
        private: bool,
        wait: bool = True,
    ) -> Reply:
        """`private`: only the asker sees the reply, so images from other channels may be
        shown; a public one shows this channel's images where all who see it may read its
        history. `wait`: for work pending in `scope` (not when a search of a wider one did)."""
        if not scope:
            return Reply(wording.NO_HISTORY, [])
        readable = {channel_id for channel_id in scope if self.access.can_read(channel_id)}
        if wait and readable:  # (what waits where the bot cannot read stays queued for now)
            await self.indexer.wait_until_done(readable, PENDING_WAIT_S)
        budget = fetch_budget(query.top)
        hits = await self.index.search(
            query.vectors, readable, 2 * budget, terms=query.terms, excluded=query.excluded
        )
        shown = await self._showable(hits, query.top, budget)
        if not shown:
            return Reply(await self._nothing(scope, readable, bool(hits), query), [])
        covered = await self._spoiler_channels(shown, origin.id) if private else set()
        if private or audience_reads_history(origin):
            return Reply("", self._embeds(shown, query, origin.id, private, covered))
        # Links only, as for other channels' images: Discord checks access on click.
        here = any(hit.ref.channel_id == origin.id for hit, _ in shown)
        content = wording.HISTORY_NOT_SHOWN if here else ""
        return Reply(content, self._embeds(shown, query, None, private, covered))

    async def _showable(
        self, hits: list[Hit], top: int, budget: int
    ) -> list[tuple[Hit, discord.Message]]:
        """The first `top` hits whose image is still there, fetching at most `budget`
        messages. A message Discord fails to give for now is passed over, unless nothing at
        all can be shown: then the failure is the answer."""
        shown: list[tuple[Hit, discord.Message]] = []
        messages: dict[int, discord.Message | None] = {}
        trouble: discord.DiscordServerError | None = None
        for hit in hits:
            if len(shown) == top:
                break
            if not self.access.can_read(hit.ref.channel_id):
                continue  # found out during this search
            if hit.ref.message_id not in messages:
                if len(messages) == budget:
                    break
                try:
                    messages[hit.ref.message_id] = await self._fetch(hit)
                except discord.DiscordServerError as exc:  # (a 5xx past discord.py's tries)
                    log.info("cannot fetch result %s for now: %s", hit.ref.message_id, exc)
                    messages[hit.ref.message_id], trouble = None, exc
            message = messages[hit.ref.message_id]
            if message is None:
                continue
            if lost_image(message, hit.ref.attachment_id, self.allowed_hosts):
                # The edit was missed (made while the bot was down): passed over as a deleted
                # message is, and gone from the index.
                await self.index.remove_images([hit.ref.key])
                continue
            shown.append((hit, message))
        if not shown and trouble is not None:
            raise trouble
        return shown

    async def _nothing(self, scope: set[int], readable: set[int], hits: bool, query: Query) -> str:
        """Why there is nothing to show: nothing indexed, nothing but the example, or nothing
        that can still be shown."""
        if not readable and len(scope) == 1:  # asked by a slash command, which works anywhere
            return wording.BOT_CANNOT_READ
        if await self.index.count(scope) == 0:
            return wording.EMPTY_INDEX
        if not hits and query.excluded is not None and await self.index.count(readable):
            return wording.NO_OTHER_IMAGES
        return wording.NOTHING_SHOWABLE

    async def _spoiler_channels(
        self, shown: list[tuple[Hit, discord.Message]], origin_id: int
    ) -> set[int]:
        """The other channels among the results that are spoiler channels (the asker's own
        channel is one they have opted in to see)."""
        channels = {hit.ref.channel_id: hit.ref.parent_id for hit, _ in shown}
        return {
            channel_id
            for channel_id, parent_id in channels.items()
            if channel_id != origin_id and await self.spoilers.covered(parent_id or channel_id)
        }

    async def _fetch(self, hit: Hit) -> discord.Message | None:
        """The original message (image URLs expire, so it is fetched afresh); drops vanished
        ones from the index."""
        try:
            return await self.locate(hit.ref)
        except discord.NotFound as exc:
            if not await self.access.gone(hit.ref.channel_id, exc):
                await self.index.remove_messages([hit.ref.message_id])
        except discord.Forbidden:
            self.access.refused(hit.ref.channel_id)
        return None

    def _embeds(
        self,
        shown: list[tuple[Hit, discord.Message]],
        query: Query,
        shown_here: int | None,  # the channel whose images a public reply shows
        private: bool,
        covered: set[int],
    ) -> list[discord.Embed]:
        embeds: list[discord.Embed] = []
        per_message: dict[int, int] = {}
        for rank, (hit, message) in enumerate(shown, 1):
            # Discord shows one of several embeds that share a `url` (message.mdx, "Embed
            # Object"): a second image of the same message gets a link of its own.
            nth = per_message[message.id] = per_message.get(message.id, 0) + 1
            link = message.jump_url if nth == 1 else f"{message.jump_url}?image={nth}"
            show_all = private or hit.ref.channel_id == shown_here
            cover = hit.ref.channel_id in covered
            embeds.append(self._embed(hit, message, link, show_all, rank, query, cover))
        return embeds

    def _embed(
        self,
        hit: Hit,
        message: discord.Message,
        link: str,
        show_all: bool,
        rank: int,
        query: Query,
        cover: bool,
    ) -> discord.Embed:
        source = source_for(message, hit.ref.attachment_id, self.allowed_hosts)
        spoiler = source is not None and (source.spoiler or cover)
        shown = query.scores.shown(hit.score)
        weak = query.scores.weak(shown, query.weak_below)
        score = query.scores.text(shown)
        title = wording.result_title(rank, score, weak=weak, spoiler=spoiler, alt=hit.alt)
        if not show_all:
            # In another channel's public reply: the link only; Discord checks access on click.
            return discord.Embed(title=title, url=link, description=message.jump_url)
        posted = wording.posted_by(message.author.mention, message.jump_url)
        embed = discord.Embed(title=title, url=link, description=posted)
        embed.set_author(name=message.author.display_name)
        if source is not None and not spoiler:  # a spoiler is never shown uncovered
            # (A signed link would show nothing once it expires, a day or so later.)
            embed.set_image(url=unsigned(source.url))
        return embed
