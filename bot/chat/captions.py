"""Captioning images from Discord messages: which images, and the reply's wording."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import discord

from bot.chat.sources import ImageSource, image_sources
from bot.errors import UserError
from bot.images.decode import ImageError
from bot.images.download import DownloadError
from bot.images.fetcher import MediaFetcher

log = logging.getLogger(__name__)

MAX_IMAGES = 4
LOOKBACK = 50


class NoImage(UserError):
    def __init__(self) -> None:
        super().__init__(
            "I found no image to caption: attach one, reply to a message with one, "
            f"or post one in the last {LOOKBACK} messages of this channel."
        )


def sources_in(
    message: discord.Message, fetcher: MediaFetcher, *, every_attachment: bool = False
) -> list[ImageSource]:
    return image_sources(message, fetcher.allowed_hosts, every_attachment=every_attachment)


async def latest_image(
    channel: discord.abc.Messageable, fetcher: MediaFetcher, before: discord.Message | None
) -> tuple[discord.Message, list[ImageSource]] | None:
    """The newest message with an image among the channel's last LOOKBACK messages."""
    async for message in channel.history(limit=LOOKBACK, before=before):
        found = sources_in(message, fetcher)
        if found:
            return message, found
    return None


def latest_note(message: discord.Message) -> str:
    """Says which image was captioned when the user did not point at one."""
    return f"\n-# captioned the latest image: {message.jump_url}"


async def caption_sources(
    fetcher: MediaFetcher, sources: Sequence[ImageSource], prompt: str | None
) -> str:
    """One line per image, numbered when there are several; a refused image says why."""
    shown = list(sources[:MAX_IMAGES])
    lines = await asyncio.gather(*(_caption_one(fetcher, s, prompt) for s in shown))
    if len(shown) == 1 and isinstance(lines[0], BaseException):
        raise lines[0]
    text = "\n".join(
        _numbered(i, len(shown), _line(result, source))
        for i, (result, source) in enumerate(zip(lines, shown, strict=True), 1)
    )
    skipped = len(sources) - len(shown)
    if skipped:
        plural = "s" if skipped > 1 else ""
        text += f"\n({skipped} more image{plural} skipped: at most {MAX_IMAGES} at a time.)"
    return text


async def _caption_one(
    fetcher: MediaFetcher, source: ImageSource, prompt: str | None
) -> str | ImageError | DownloadError:
    try:
        image = await fetcher.fetch_image(source)
    except (ImageError, DownloadError) as exc:
        return exc
    return await fetcher.vision.caption(image, prompt)


def _line(result: str | BaseException, source: ImageSource) -> str:
    if isinstance(result, BaseException):
        return f"can't use {discord.utils.escape_markdown(source.filename)}: {result}"
    return result


def _numbered(i: int, total: int, line: str) -> str:
    return f"{i}. {line}" if total > 1 else line
