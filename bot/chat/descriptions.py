"""Automatic alt text: in a channel that asked for it (`alttext on`), a live message whose
images lack alt text gets one reply describing them (which images, and the wording:
bot.chat.alt_text_lines).

Background work, never in the way of commands: captions wait behind interactive requests and
at most CAPTIONS_AT_ONCE share the running decode; when more than ALT_TEXT_MAX_PENDING
messages wait, new ones are skipped (one log line each) rather than queued; and descriptions
share a pace with repost replies (bot.chat.pacing), so that answers to commands there never
wait behind them. Each image is downloaded and decoded once, for its description and for the
index (unless its poster opted out or the channel is ignored: then it is described, not
indexed). The reply pings and notifies no one. What was posted for which
message and poster is recorded, so that a 🗑️ or the original's deletion can take it down
(bot.chat.description_removal); a description whose original is deleted before it is posted
is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

import discord

from bot.chat.alt_text_lines import Described, reply_text
from bot.chat.pacing import ChannelPace
from bot.chat.permissions import may_reply
from bot.chat.reposts import root_of
from bot.images.decode import ImageError
from bot.images.download import DownloadError
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import Decoded
from bot.index.background import Indexer
from bot.index.described import Covers, Description, covers_text
from bot.vision.service import VisionService

log = logging.getLogger(__name__)

CAPTIONS_AT_ONCE = 2
# Messages whose pictures are downloaded, decoded and captioned at once; the rest wait their
# turn without holding decoded pictures (up to ten per message, megabytes each, for up to twice
# ALT_TEXT_MAX_PENDING messages in a burst).
MESSAGES_AT_ONCE = 2

Sources = Callable[[discord.Message], list[ImageSource]]


@dataclass(eq=False)
class _Waiting:
    """A message whose description is on its way."""

    channel_id: int
    covers: Covers
    task: asyncio.Task[None] | None = None
    posting: bool = False  # the reply is being sent: too late to cancel, not to take back
    gone: bool = False  # the message was deleted meanwhile


class Descriptions:
    def __init__(
        self,
        vision: VisionService,
        fetcher: MediaFetcher,
        indexer: Indexer,
        indexable: Sources,
        max_pending: int,
        pace: ChannelPace,
    ) -> None:
        self.vision = vision
        self.fetcher = fetcher
        self.indexer = indexer
        self.index = indexer.index
        self.indexable = indexable
        self.max_pending = max_pending
        self.pace = pace
        self._captioning = asyncio.Semaphore(CAPTIONS_AT_ONCE)
        self._working = asyncio.Semaphore(MESSAGES_AT_ONCE)
        self._waiting: dict[int, _Waiting] = {}

    @property
    def waiting(self) -> int:
        """Messages whose description is on its way."""
        return len(self._waiting)

    def watched(self, channel: object) -> bool:
        """Read from memory: asked for every message."""
        in_server = isinstance(channel, discord.abc.GuildChannel | discord.Thread)
        return in_server and self.index.describes_images(root_of(channel))

    def posted(self, message: discord.Message, sources: list[ImageSource]) -> None:
        """Starts describing in the background, unless more than `max_pending` wait already.
        A channel with none waiting still gets one (up to twice `max_pending` in all): one busy
        channel, paced at a few posts a period, would otherwise leave the others none."""
        count = len(self._waiting)
        if count > self.max_pending and not (
            count < 2 * self.max_pending and self._none_waiting_in(message.channel.id)
        ):
            log.info(
                "alt text skipped for message %s: %d descriptions are waiting", message.id, count
            )
            return
        if not may_reply(message.channel):
            log.debug("alt text skipped for message %s: cannot reply there", message.id)
            return
        waiting = self._waiting[message.id] = _Waiting(message.channel.id, covered(sources))
        task = asyncio.create_task(self._describe(message, sources, waiting), name="glimpse-alt")
        waiting.task = task

        def done(_: object) -> None:  # (an edit may have started another for the same message)
            if self._waiting.get(message.id) is waiting:
                del self._waiting[message.id]

        task.add_done_callback(done)

    def on_the_way(self, message_id: int) -> Covers | None:
        """What the description on its way for this message covers (None: none is)."""
        waiting = self._waiting.get(message_id)
        return None if waiting is None or waiting.gone else waiting.covers

    def _none_waiting_in(self, channel_id: int) -> bool:
        return all(w.channel_id != channel_id for w in self._waiting.values())

    def deleted(self, message_ids: Collection[int]) -> bool:
        """These messages are gone: their descriptions still on the way are dropped (True if
        there were any)."""
        dropped = False
        for message_id in message_ids:
            waiting = self._waiting.get(message_id)
            if waiting is None:
                continue
            dropped = waiting.gone = True
            if not waiting.posting and waiting.task is not None:
                waiting.task.cancel()
        return dropped

    async def close(self) -> None:
        """Drops the descriptions still on their way (they are not kept across restarts); one
        being posted is finished and recorded, or it could never be taken down afterwards."""
        tasks = [(w.task, w.posting) for w in self._waiting.values() if w.task is not None]
        for task, posting in tasks:
            if not posting:
                task.cancel()
        await asyncio.gather(*(task for task, _ in tasks), return_exceptions=True)

    async def _describe(
        self, message: discord.Message, sources: list[ImageSource], waiting: _Waiting
    ) -> None:
        try:
            async with self._working:
                if not self.watched(message.channel):
                    return  # `alttext off` while it waited its turn
                fetched = await asyncio.gather(*(self._fetch(source) for source in sources))
                got = [(s, d) for s, d in zip(sources, fetched, strict=True) if d is not None]
                captions, _ = await asyncio.gather(
                    asyncio.gather(*(self._caption(s, d) for s, d in got)),
                    self._index(message, got),
                )
                described = [(c, s) for c, (s, _) in zip(captions, got, strict=True) if c]
                del fetched, got  # the pictures are not held while the reply waits its turn
            if described:
                await self._reply(message, described, waiting)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("describing the images of message %s failed", message.id)

    async def _fetch(self, source: ImageSource) -> Decoded | None:
        try:
            return await self.fetcher.fetch(source)
        except (ImageError, DownloadError) as exc:
            log.info("no alt text for %s: %s", source.filename, exc)
            return None

    async def _caption(self, source: ImageSource, decoded: Decoded) -> str:
        async with self._captioning:
            caption = await self.vision.caption(decoded.image, background=True)
        if not caption.strip():
            log.info("no alt text for %s: the caption is empty", source.filename)
        return caption.strip()

    async def _index(
        self, message: discord.Message, got: list[tuple[ImageSource, Decoded]]
    ) -> None:
        """The same pictures, into the index: none of an opted-out poster or ignored channel."""
        indexable = {source.ref.key for source in self.indexable(message)}
        await self.indexer.index_fetched([(s.ref, d) for s, d in got if s.ref.key in indexable])

    async def _reply(
        self, message: discord.Message, described: list[Described], waiting: _Waiting
    ) -> None:
        await self.pace.wait(message.channel.id)
        waiting.posting = True
        if waiting.gone or not self.watched(message.channel):
            return
        try:
            reply = await message.reply(reply_text(described), mention_author=False, silent=True)
        except discord.HTTPException as exc:
            log.info("cannot describe images in channel %s: %s", message.channel.id, exc)
            return
        # Deleted while the reply was on its way, before it is on record: the deletion's
        # handler found no record, so it is taken back here (and recorded if Discord refuses,
        # for a 🗑️ later). Deleted from now on: the handler, whose lookup the database answers
        # after this record is written, finds it and takes it down (one request, not two).
        if not waiting.gone or not await take_down(reply):
            await self.index.add_description(_record(message, reply, waiting.covers))


def covered(sources: list[ImageSource]) -> Covers:
    """What a description of these images (those of a message without alt text) covers."""
    return tuple((source.ref.attachment_id, source.spoiler) for source in sources)


def _record(message: discord.Message, reply: discord.Message, covers: Covers) -> Description:
    assert message.guild is not None
    return Description(
        description_id=reply.id,
        message_id=message.id,
        channel_id=message.channel.id,
        parent_id=getattr(message.channel, "parent_id", None),
        guild_id=message.guild.id,
        poster_id=message.author.id,
        covers=covers_text(covers),
    )


async def take_down(description: discord.Message | discord.PartialMessage) -> bool:
    """Whether it is gone. Discord may refuse for now (a 5xx) or until a moderator acts (403
    in a locked thread: threads.mdx, "Locked Threads"): then its record is kept, for a 🗑️ to
    take it down later."""
    try:
        await description.delete()
    except discord.NotFound:
        pass  # deleted already
    except discord.HTTPException as exc:
        log.info("cannot delete description %s: %s", description.id, exc)
        return False
    return True
