"""Captioning images from Discord messages: which images, and the lines of the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import discord

from bot import wording
from bot.chat.fitting import CONTENT_MAX, fit_lines
from bot.chat.sources import image_sources
from bot.errors import UserError
from bot.images.decode import ImageError
from bot.images.download import DownloadError
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.vision.service import VisionService

MAX_IMAGES = 4
LOOKBACK = 50


class NoImage(UserError):
    def __init__(self) -> None:
        super().__init__(wording.no_image(LOOKBACK))


class Captions:
    """Finds the images a caption command means, and captions up to MAX_IMAGES of them."""

    def __init__(self, vision: VisionService, fetcher: MediaFetcher) -> None:
        self.vision = vision
        self.fetcher = fetcher

    def sources_in(
        self, message: discord.Message, *, every_attachment: bool = False
    ) -> list[ImageSource]:
        """`every_attachment` keeps files that do not look like images, so that a user who
        attached one to a command hears what is wrong with it instead of being ignored."""
        hosts = self.fetcher.allowed_hosts
        return image_sources(message, hosts, every_attachment=every_attachment)

    async def latest_image(
        self, channel: discord.abc.Messageable, before: discord.Message | None
    ) -> tuple[discord.Message, list[ImageSource]] | None:
        """The newest message with an image among the channel's last LOOKBACK messages."""
        async for message in channel.history(limit=LOOKBACK, before=before):
            found = self.sources_in(message)
            if found:
                return message, found
        return None

    async def caption(
        self, sources: Sequence[ImageSource], prompt: str | None, note: str = ""
    ) -> str:
        """One line per image, numbered when there are several; a refused image says why.
        `note` ends the reply; the lines are shortened so that the whole fits in a message."""
        shown = list(sources[:MAX_IMAGES])
        results = await asyncio.gather(*(self._caption_one(s, prompt) for s in shown))
        if len(shown) == 1 and isinstance(results[0], BaseException):
            raise results[0]
        skipped = len(sources) - len(shown)
        ending = "\n" + wording.images_skipped(skipped, MAX_IMAGES) if skipped else ""
        return _reply(list(zip(results, shown, strict=True)), ending + note)

    async def _caption_one(
        self, source: ImageSource, prompt: str | None
    ) -> str | ImageError | DownloadError:
        try:
            fetched = await self.fetcher.fetch(source)
        except (ImageError, DownloadError) as exc:
            return exc
        return await self.vision.caption(fetched.image, prompt)


def _reply(captioned: list[tuple[str | BaseException, ImageSource]], ending: str) -> str:
    """The numbered lines and `ending`, within a message's length: the captions (never the
    markup around them) are shortened fairly, each cut ending with "…"."""
    texts = [_line(r, s) if isinstance(r, BaseException) else r for r, s in captioned]

    def render(shortened: list[str]) -> str:
        lines = [
            text if isinstance(result, BaseException) else _line(text, source)
            for text, (result, source) in zip(shortened, captioned, strict=True)
        ]
        numbered = (wording.numbered(i, len(lines), line) for i, line in enumerate(lines, 1))
        return "\n".join(numbered) + ending

    room = CONTENT_MAX - len(render([""] * len(texts)))
    reply = render(fit_lines(texts, room))
    while len(reply) > CONTENT_MAX and room > 0:  # markup that grew with the text (escapes)
        room -= len(reply) - CONTENT_MAX
        reply = render(fit_lines(texts, room))
    return reply


def _line(result: str | BaseException, source: ImageSource) -> str:
    if isinstance(result, BaseException):
        return wording.caption_refused(discord.utils.escape_markdown(source.filename), result)
    # A spoilered image's caption would give it away: it goes under the same cover.
    return wording.spoiler(result) if source.spoiler else result
