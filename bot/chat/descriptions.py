"""Automatic alt text: in a channel that asked for it (`alttext on`), a live message whose
images lack alt text gets one reply describing them.

Background work: captions wait behind interactive requests, and when more than
ALT_TEXT_MAX_PENDING messages wait, new ones are skipped (one log line each) rather than
queued. Link previews are not described; forwards' images are; spoilered images are described
under a spoiler cover. The reply pings no one and fits in one message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord

from bot import wording
from bot.chat.fitting import CONTENT_MAX, fit_lines
from bot.chat.reposts import root_of
from bot.chat.sources import image_sources, is_command_reply
from bot.images.decode import ImageError
from bot.images.download import DownloadError
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.vision.scheduler import Busy
from bot.vision.service import VisionService

log = logging.getLogger(__name__)

Describes = Callable[[int], bool]


class Descriptions:
    def __init__(
        self,
        vision: VisionService,
        fetcher: MediaFetcher,
        describes: Describes,
        max_pending: int,
    ) -> None:
        self.vision = vision
        self.fetcher = fetcher
        self.describes = describes
        self.max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()

    def watched(self, channel: object) -> bool:
        """Read from memory: asked for every message."""
        in_server = isinstance(channel, discord.abc.GuildChannel | discord.Thread)
        return in_server and self.describes(root_of(channel))

    def undescribed(self, message: discord.Message, own_id: int | None) -> list[ImageSource]:
        """A member's attached (or forwarded) images without alt text; never a bot's post
        (webhook posts count as members') nor any command reply."""
        if message.author.id == own_id or is_command_reply(message):
            return []
        if message.author.bot and message.webhook_id is None:
            return []
        found = image_sources(message, self.fetcher.allowed_hosts)
        return [s for s in found if not s.from_embed and not (s.alt_text or "").strip()]

    def posted(self, message: discord.Message, sources: list[ImageSource]) -> None:
        """Starts describing, in the background; skipped when too many wait already."""
        if len(self._tasks) >= self.max_pending:
            log.info(
                "alt text skipped for message %s: %d descriptions wait already",
                message.id,
                len(self._tasks),
            )
            return
        task = asyncio.create_task(self._describe(message, sources), name="glimpse-alt-text")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _describe(self, message: discord.Message, sources: list[ImageSource]) -> None:
        captions = await asyncio.gather(*(self._caption(s) for s in sources))
        described = [(c, s) for c, s in zip(captions, sources, strict=True) if c]
        if not described:
            return
        try:
            await message.reply(_reply(described), mention_author=False)
        except discord.HTTPException as exc:
            log.info("cannot describe images in channel %s: %s", message.channel.id, exc)

    async def _caption(self, source: ImageSource) -> str:
        try:
            fetched = await self.fetcher.fetch(source)
            return await self.vision.caption(fetched.image, background=True)
        except (ImageError, DownloadError, Busy) as exc:
            log.info("no alt text for %s: %s", source.filename, exc)
            return ""


def _reply(described: list[tuple[str, ImageSource]]) -> str:
    """One line per image, numbered when there are several, shortened to fit one message."""

    def render(texts: list[str]) -> str:
        lines = []
        for number, (text, (_, source)) in enumerate(zip(texts, described, strict=True), 1):
            text = wording.spoiler(text) if source.spoiler else text
            line = wording.automatic_alt_text(text)
            lines.append(wording.numbered(number, len(described), line))
        return "\n".join(lines)

    texts = [caption for caption, _ in described]
    room = CONTENT_MAX - len(render([""] * len(texts)))
    reply = render(fit_lines(texts, room))
    while len(reply) > CONTENT_MAX and room > 0:  # markup that grew with the text (escapes)
        room -= len(reply) - CONTENT_MAX
        reply = render(fit_lines(texts, room))
    return reply
