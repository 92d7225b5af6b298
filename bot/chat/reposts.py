"""Reposts: in a channel that asked for it (`reposts on`), an image posted there before gets a
reply with a link to its first post.

Only messages posted live are checked, never ones read by catch-up or `index`, and only once
their images are indexed. An image was posted before when an earlier message of the same
channel or its public threads holds the same file (SHA-256), or one whose cosine with it is at
least REPOST_MIN_SCORE (an animation's best pair of frames); a private thread is compared only
within itself. No other channel's images are compared or named, so a reply tells nothing about
them. A site's picture for many of its pages (two pages' previews with the picture at one
address) is not a repost. Forwards count as posts; opted-out members' images are neither
checked nor matched (they are not in the index). One reply per message, pinging no one, also
when a link preview brings its image a moment later; commands are queries, not posts: neither
checked nor matched. Deleting the post takes its note down (for the last LIVE_MESSAGES posts:
the note is remembered in memory).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import discord
from yarl import URL

from bot import wording
from bot.chat.access import ReadAccess
from bot.chat.fitting import CONTENT_MAX, clip
from bot.chat.pacing import ChannelPace
from bot.chat.permissions import may_reply
from bot.chat.sources import lost_image, source_for
from bot.images.fetcher import ImageSource
from bot.images.loader import Decoded
from bot.index.background import Indexer
from bot.index.ranking import Earlier
from bot.index.refs import ImageRef, Key

log = logging.getLogger(__name__)

INDEXED_WAIT_S = 120.0  # the longest wait for the images, its and the earlier ones, to be indexed
LIVE_MESSAGES = 1000  # recent posts remembered, so that a late link preview is checked once
TRIED_MATCHES = 5  # earliest matches whose message is fetched before giving up

Locate = Callable[[ImageRef], Awaitable[discord.Message | None]]
Sources = Callable[[discord.Message], list[ImageSource]]
IsCommand = Callable[[discord.Message], Awaitable[bool]]


def root_of(channel: object) -> int:
    """The channel whose setting applies: a thread's parent (a forum post's forum), else the
    channel itself."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return getattr(channel, "id", 0)


@dataclass
class _Post:
    checked: set[Key] = field(default_factory=set)
    answered: bool = False
    gone: bool = False  # deleted while its reply waited
    note: discord.Message | None = None  # the reply pointing out the repost, once posted
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Reposts:
    def __init__(
        self,
        indexer: Indexer,
        access: ReadAccess,
        locate: Locate,
        sources: Sources,
        min_score: float,
        pace: ChannelPace,
        hosts: frozenset[str],
        is_command: IsCommand,
    ) -> None:
        self.indexer = indexer
        self.index = indexer.index
        self.access = access
        self.locate = locate
        self.sources = sources
        self.min_score = min_score
        self.pace = pace
        self.hosts = hosts  # where Discord serves media
        self.is_command = is_command
        self._live: OrderedDict[int, _Post] = OrderedDict()

    def watched(self, channel: object) -> bool:
        """Read from memory: asked for every message."""
        in_server = isinstance(channel, discord.abc.GuildChannel | discord.Thread)
        return in_server and self.index.checks_reposts(root_of(channel))

    async def posted(self, message: discord.Message) -> None:
        """A message just posted in a watched channel."""
        post = self._live[message.id] = _Post()
        while len(self._live) > LIVE_MESSAGES:
            self._live.popitem(last=False)
        await self._check(message, post)

    async def edited(self, message: discord.Message) -> None:
        """An edit: images that arrived since (link previews) of a message posted live."""
        post = self._live.get(message.id)
        if post is not None:
            await self._check(message, post)

    async def deleted(self, message_ids: Iterable[int]) -> None:
        """Deleted messages: a reply still waiting its turn is not sent (Discord would refuse
        it, and the refusal would count towards the invalid requests); one already posted is
        taken down, since it points out a post no one can see any more."""
        deleted = set(message_ids)
        for message_id in deleted:
            post = self._live.get(message_id)
            if post is not None:
                post.gone = True
                if post.note is not None and post.note.id in deleted:
                    post.note = None  # gone in the same bulk deletion
                await _take_down(post)

    async def _indexed_first(self, fresh: list[ImageSource]) -> None:
        """The post's images fetched and embedded now, ahead of the queue, where a backlog (a
        catch-up's, `!index`'s) would keep them past INDEXED_WAIT_S. One that fails is left
        to the queue, which tells or tries again."""
        fetcher = self.indexer.uploads.fetcher
        got = await asyncio.gather(*(fetcher.fetch(s) for s in fresh), return_exceptions=True)
        fetched = [(s.ref, d) for s, d in zip(fresh, got, strict=True) if isinstance(d, Decoded)]
        await self.indexer.index_fetched(fetched)

    async def _check(self, message: discord.Message, post: _Post) -> None:
        if not may_reply(message.channel):
            return  # a refused reply still counts towards Discord's invalid-request limit
        async with post.lock:
            fresh = [s for s in self.sources(message) if s.ref.key not in post.checked]
            if post.answered or not fresh:
                return
            keys = [source.ref.key for source in fresh]
            post.checked.update(keys)
            await self.indexer.submit(fresh)  # queued already by the indexing listener, or now
            await self._indexed_first(fresh)
            family = await self._family(message.channel)
            # Then the earlier posts it is compared with, queued before it (the queue is taken
            # in posting order; a backlog elsewhere is not waited for).
            places = family | {message.channel.id}
            queued = functools.partial(self.index.pending_up_to, places, message.id)
            await self.indexer.wait_while(queued, INDEXED_WAIT_S)
            lines = await self._lines(message, fresh, family)
            if not lines:
                return
            post.answered = True
            await self.pace.wait(message.channel.id)
            if post.gone or not self.watched(message.channel):
                return  # deleted, or `reposts off`, while it waited its turn
            try:
                post.note = await message.reply(_reply_text(lines), mention_author=False)
            except discord.HTTPException as exc:
                log.info("cannot point out a repost in channel %s: %s", message.channel.id, exc)
            if post.gone:  # deleted while the reply was on its way
                await _take_down(post)

    async def _lines(
        self, message: discord.Message, fresh: list[ImageSource], family: set[int]
    ) -> list[str]:
        """One line per image of the message that was posted before, in the message's order."""
        indexed = await self.index.of_message(message.id)
        lines: list[str] = []
        for source in fresh:
            if source.ref.key not in indexed:
                continue  # refused, gone, or still not indexed
            digest, frames = indexed[source.ref.key]
            found = await self.index.earlier(digest, frames, family, message.id, self.min_score)
            first = await self._first_shown(found, source)
            if first is not None:
                match, earlier = first
                lines.append(wording.repost_line(earlier.jump_url, match.score, match.identical))
        return lines

    async def _family(self, channel: object) -> set[int]:
        """The channel and its public threads, archived ones included; a private thread alone."""
        if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            return set()
        if isinstance(channel, discord.Thread) and channel.is_private():
            return {channel.id}
        root = root_of(channel)
        guild = channel.guild
        archived = await self.access.archived_threads(guild, under=root)
        family = {root}
        family |= {t.id for t in guild.threads if t.parent_id == root and not t.is_private()}
        family |= {t.id for t in archived if t.parent_id == root and not t.private}
        return {channel_id for channel_id in family if self.access.can_read(channel_id)}

    async def _first_shown(
        self, found: list[Earlier], source: ImageSource
    ) -> tuple[Earlier, discord.Message] | None:
        """The earliest match whose message is still there (vanished ones leave the index),
        and not the picture of `source`'s site for another of its pages."""
        for match in found[:TRIED_MATCHES]:
            try:
                earlier = await self.locate(match.ref)
            except discord.NotFound as exc:
                if not await self.access.gone(match.ref.channel_id, exc):
                    await self.index.remove_messages([match.ref.message_id])
                continue
            except discord.Forbidden:
                self.access.refused(match.ref.channel_id)
                continue
            except discord.DiscordServerError as exc:  # Discord's trouble: no note this time
                log.info("cannot fetch earlier post %s: %s", match.ref.message_id, exc)
                return None
            if earlier is None or await self.is_command(earlier):
                continue  # (a command's image is a query: `!find` with it asked if it was posted)
            if lost_image(earlier, match.ref.attachment_id, self.hosts):
                await self.index.remove_images([match.ref.key])  # an edit missed: gone
                continue
            if self._sites_picture(source, earlier, match.ref.attachment_id):
                continue
            return match, earlier
        return None

    def _sites_picture(self, new: ImageSource, earlier: discord.Message, key: int) -> bool:
        """Previews of two pages of one site with the picture at one address (a preview's key
        is its picture's address): the site names it for many pages (its logo, a banner), so
        it tells nothing of what was posted. The same page again is a repost, and so is the
        picture at an address of its own (another upload of it). The earlier message's
        images are read only for such a preview, not for every match."""
        if new.page is None or key != new.ref.attachment_id:
            return False
        shown = source_for(earlier, key, self.hosts)
        if shown is None or shown.page is None:
            return False
        (site, page), (earlier_site, earlier_page) = _page(new.page), _page(shown.page)
        return page != earlier_page and site == earlier_site


def _page(address: str) -> tuple[str | None, tuple[str, tuple[tuple[str, str], ...]]]:
    """A page's site (without "www.") and the page as its readers tell pages apart: its path
    without a trailing slash, its query without tracking parameters (utm_...)."""
    try:
        url = URL(address)
    except ValueError:  # (UnicodeError is one)
        return None, (address, ())
    query = tuple((k, v) for k, v in url.query.items() if not k.lower().startswith("utm_"))
    return (url.host or "").removeprefix("www."), (url.path.rstrip("/"), query)


async def _take_down(post: _Post) -> None:
    note, post.note = post.note, None
    if note is None:
        return
    try:
        await note.delete()
    except discord.NotFound:
        pass  # deleted already (a moderator, or the same bulk deletion)
    except discord.HTTPException as exc:
        log.info("cannot take down repost note %s: %s", note.id, exc)


def _reply_text(lines: list[str]) -> str:
    """One numbered line per image, as many as fit in a message (a webhook's post can repeat
    one picture twenty times), then how many more there are."""
    numbered = [wording.numbered(i, len(lines), line) for i, line in enumerate(lines, 1)]
    for shown in range(len(numbered), 0, -1):
        text = "\n".join(numbered[:shown])
        if shown < len(numbered):
            text += "\n" + wording.reposts_not_shown(len(numbered) - shown)
        if len(text) <= CONTENT_MAX:
            return text
    return clip(numbered[0])
