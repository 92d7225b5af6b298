"""Captioning images from Discord messages: which images, and the lines of the reply."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence

import discord

from bot import wording
from bot.chat.fitting import fit_rendered
from bot.chat.sources import image_sources
from bot.errors import UserError
from bot.images.decode import ImageError
from bot.images.download import DownloadError
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.markdown import as_typed, spoiler
from bot.vision.scheduler import Busy
from bot.vision.service import VisionService

MAX_IMAGES = 4
LOOKBACK = 50
# Discord previews a message's links after posting it, in a MESSAGE_UPDATE (usually within a
# second or two); a link in angle brackets is never previewed.
PREVIEW_WAIT_S = 5.0
LINK = re.compile(r"<?https?://[^\s<>]+>?")
# A link with the markdown around it: it runs to the next space, so it took the closing spoiler
# bars, bracket or emphasis already; this takes the opening ones. A masked link keeps its words.
_WRAPPED_LINK = re.compile(
    r"\[([^\]\n]*)\]\(" + LINK.pattern + r"\)|(?:\|\||\(|[*_~`]+)?" + LINK.pattern
)


class NoImage(UserError):
    def __init__(self) -> None:
        super().__init__(wording.no_image(LOOKBACK))


class NoHistory(UserError):
    def __init__(self) -> None:
        super().__init__(wording.NO_HISTORY_TO_CAPTION)


class NoSharedHistory(UserError):
    def __init__(self) -> None:
        super().__init__(wording.HISTORY_NOT_SHARED_TO_CAPTION)


class CannotReadChannel(UserError):
    def __init__(self) -> None:
        super().__init__(wording.BOT_CANNOT_READ_TO_CAPTION)


class CannotReadThreadStart(UserError):
    def __init__(self) -> None:
        super().__init__(wording.BOT_CANNOT_READ_THREAD_START)


class NoImageInMessage(UserError):
    def __init__(self) -> None:
        super().__init__(wording.NO_IMAGE_IN_MESSAGE)


class NoPreview(UserError):
    def __init__(self) -> None:
        super().__init__(wording.NO_PREVIEW)


def without_links(text: str) -> str:
    """A prompt's words: its links gone with the markdown that wrapped them, and no spoiler
    bars (a cover is markup, never words of a caption)."""
    return _WRAPPED_LINK.sub(lambda link: link.group(1) or "", text).replace("||", "")


def previewed_links(text: str) -> list[str]:
    """The links in `text` that Discord previews (not those in angle brackets)."""
    return [link for link in LINK.findall(text) if not link.startswith("<")]


class Captions:
    """Finds the images a caption command means, and captions up to MAX_IMAGES of them."""

    def __init__(self, vision: VisionService, fetcher: MediaFetcher) -> None:
        self.vision = vision
        self.fetcher = fetcher

    def sources_in(
        self, message: discord.Message, *, every_attachment: bool = False
    ) -> list[ImageSource]:
        """`every_attachment` keeps files that do not look like images (after the images), so
        that a user who attached one to a command hears what is wrong with it."""
        hosts = self.fetcher.allowed_hosts
        return image_sources(message, hosts, every_attachment=every_attachment)

    async def preview_sources(
        self, client: discord.Client, message: discord.Message
    ) -> list[ImageSource]:
        """The images of `message`'s link previews, waiting up to PREVIEW_WAIT_S for them.
        discord.py updates the cached `message` in place when they arrive."""

        def previewed(_before: discord.Message, after: discord.Message) -> bool:
            return after.id == message.id and bool(self.sources_in(after))

        if found := self.sources_in(message):
            return found
        try:  # (no await since the check above, so no edit can slip between the two)
            _, after = await client.wait_for(
                "message_edit", check=previewed, timeout=PREVIEW_WAIT_S
            )
        except TimeoutError:
            return []
        return self.sources_in(after)

    async def latest_image(
        self, channel: discord.abc.Messageable, before: discord.Message | None
    ) -> tuple[discord.Message, list[ImageSource]] | None:
        """The newest message with an image among the channel's last LOOKBACK messages
        (raises CannotReadChannel when Discord refuses to show them)."""
        try:
            async for message in channel.history(limit=LOOKBACK, before=before):
                if message.type is discord.MessageType.thread_starter_message:
                    with contextlib.suppress(CannotReadThreadStart):  # then it is not the latest
                        message = await started_from(message) or message
                found = self.sources_in(message)
                if found:
                    return message, found
        except discord.Forbidden:
            raise CannotReadChannel from None
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
        if all(isinstance(result, Busy) for result in results):
            raise Busy  # the whole command was refused: nothing to number
        skipped = sum(not source.other_file for source in sources[len(shown) :])
        ending = "\n" + wording.images_skipped(skipped, MAX_IMAGES) if skipped else ""
        return _reply(list(zip(results, shown, strict=True)), ending + note)

    async def _caption_one(
        self, source: ImageSource, prompt: str | None
    ) -> str | ImageError | DownloadError | Busy:
        try:
            fetched = await self.fetcher.fetch(source)
            # A full queue refuses this image only: the others, admitted, are answered.
            return await self.vision.caption(fetched.image, prompt)
        except (ImageError, DownloadError, Busy) as exc:
            return exc


Part = tuple[str, ImageSource, bool]  # text, source, is alt text


def _reply(captioned: list[tuple[str | BaseException, ImageSource]], ending: str) -> str:
    """The numbered lines and `ending`, within a message's length: the captions and alt texts
    (never the markup around them) are shortened fairly, each cut ending with "…". An image's
    alt text follows its caption when it says something else."""
    parts: list[Part] = []
    for result, source in captioned:
        if isinstance(result, BaseException):
            parts.append((_refusal(result, source), source, False))
            continue
        parts.append((result, source, False))
        alt = _alt_text(source.alt_text, result)
        if alt:
            parts.append((alt, source, True))

    def render(shortened: list[str]) -> str:
        lines, number = [], 0
        for text, (_, source, is_alt) in zip(shortened, parts, strict=True):
            if is_alt:
                lines.append(wording.alt_text_line(_covered(text, source)))
                continue
            number += 1
            lines.append(wording.numbered(number, len(captioned), _covered(text, source)))
        return "\n".join(lines) + ending

    return fit_rendered([text for text, *_ in parts], render)


def _refusal(error: BaseException, source: ImageSource) -> str:
    return wording.caption_refused(source.filename, error)


def _covered(text: str, source: ImageSource) -> str:
    """A caption, alt text or refusal as it reads; a spoilered image's would give it away
    (its file name too), so it goes under the same cover."""
    return spoiler(text) if source.spoiler else as_typed(text)


def _alt_text(alt_text: str | None, caption: str) -> str:
    """The alt text on one line; empty when it says what the caption says (in any case,
    spacing or final punctuation)."""
    alt = " ".join((alt_text or "").split())

    def plain(text: str) -> str:
        return " ".join(text.split()).casefold().rstrip(".!")

    return "" if plain(alt) == plain(caption) else alt


async def started_from(starter: discord.Message) -> discord.Message | None:
    """The message a thread was started from, to which the thread's first message only points
    (message.mdx, "Thread starter messages"); None when it was deleted, CannotReadThreadStart
    when Discord will not show it (403: "That message has no image" would be untrue).
    Fetched from the parent channel: discord.py gives Discord's resolved copy the thread as its
    channel, so its link, and where its image's expired URL would be renewed, were wrong."""
    reference = starter.reference
    parent = getattr(starter.channel, "parent", None)
    if (
        reference is None
        or reference.message_id is None
        or isinstance(reference.resolved, discord.DeletedReferencedMessage)
        or not isinstance(parent, discord.TextChannel)
    ):
        return None
    try:
        return await parent.fetch_message(reference.message_id)
    except discord.NotFound:
        return None
    except discord.Forbidden:
        raise CannotReadThreadStart from None
