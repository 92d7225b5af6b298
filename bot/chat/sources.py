"""Which images a Discord message carries, and where Discord says they can be fetched.

Only URLs from Discord's own payloads are used: attachment URLs as given, and for embeds only
the media proxy's URL (never the original site's), so the bot never fetches arbitrary links.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath

import discord
from yarl import URL

from bot.images.decode import IMAGE_EXTENSIONS
from bot.images.fetcher import ImageSource
from bot.index.refs import EMBED_KEYS_FROM, SNOWFLAKES_FROM, ImageRef

#: Where Discord serves media (message.mdx, "Attachment Object" and "Embed Object"):
#: attachments on the CDN, its proxy, and the proxies of other sites' images (link previews).
DISCORD_MEDIA_HOSTS = frozenset(
    {
        "cdn.discordapp.com",
        "media.discordapp.net",
        "images-ext-1.discordapp.net",
        "images-ext-2.discordapp.net",
    }
)
IS_SPOILER = 1 << 3  # message.mdx, "Attachment Flags"
# A media channel post's thumbnail: shown in the channel's grid, not on the message (ibid.).
IS_THUMBNAIL = 1 << 1
#: Replies to slash commands and context menus (message.mdx, "Message Types").
COMMAND_REPLY_TYPES = frozenset(
    {discord.MessageType.chat_input_command, discord.MessageType.context_menu_command}
)
_SPOILERED = re.compile(r"\|\|(.+?)\|\|", re.DOTALL)
# The signature of a Discord CDN link, which Discord renews (reference.mdx, "Signed Attachment
# CDN URLs"): not part of which image a link is.
_SIGNATURE = ("ex", "is", "hm")


def is_image_attachment(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type.startswith("image/"):
        return True
    return PurePosixPath(attachment.filename.lower()).suffix in IMAGE_EXTENSIONS


def is_spoiler(attachment: discord.Attachment) -> bool:
    """Flagged IS_SPOILER, or uploaded under the `SPOILER_` name that sets the flag."""
    return attachment.filename.startswith("SPOILER_") or bool(attachment.flags.value & IS_SPOILER)


def is_command_reply(message: discord.Message) -> bool:
    """An application's answer to a command, whichever application (its own or another's)."""
    return message.interaction_metadata is not None or message.type in COMMAND_REPLY_TYPES


def image_sources(
    message: discord.Message, allowed_hosts: frozenset[str], *, every_attachment: bool = False
) -> list[ImageSource]:
    """Attachments first, then image embeds through the media proxy, in message order; a
    forward's images (its snapshot: message.mdx, "Message Snapshot Object") count as the
    forwarding message's own. A thumbnail is not on the message, so not one of its images.

    `every_attachment` keeps files that do not look like images, last, so that a user who
    attached one to a command hears what is wrong with it instead of being ignored, and none
    takes the place of an image among the first few.
    """
    ref = _ref_factory(message)
    parts = _parts(message)
    attachments = [a for part in parts for a in part.attachments]
    attachments = [a for a in attachments if not a.flags.value & IS_THUMBNAIL]
    sources = [_attachment_source(a, ref) for a in attachments if is_image_attachment(a)]
    sources += [source for _, source in _embed_sources(parts, allowed_hosts, ref)]
    if every_attachment:
        others = [a for a in attachments if not is_image_attachment(a)]
        sources += [
            dataclasses.replace(_attachment_source(a, ref), other_file=True) for a in others
        ]
    return sources


def _attachment_source(
    attachment: discord.Attachment, ref: Callable[[int], ImageRef]
) -> ImageSource:
    return ImageSource(
        ref(attachment.id),
        attachment.url,
        attachment.filename,
        attachment.size,
        spoiler=is_spoiler(attachment),
        alt_text=attachment.description,
        content_type=attachment.content_type,
    )


def _embed_sources(
    parts: list[discord.Message | discord.MessageSnapshot],
    allowed_hosts: frozenset[str],
    ref: Callable[[int], ImageRef],
) -> Iterator[tuple[int, ImageSource]]:
    """Image embeds through the media proxy, with their position among all the embeds (own
    first, then the snapshot's). An embed has no ID of its own: it is keyed by the image's
    address, which an edit that removes or adds another link does not move, as it moves a
    position."""
    embeds = [(part, embed) for part in parts for embed in part.embeds]
    for position, (part, embed) in enumerate(embeds):
        media = embed.image if embed.image and embed.image.proxy_url else None
        if media is None and embed.type in ("image", "gifv"):
            media = embed.thumbnail
        proxy, address = (media.proxy_url, media.url) if media else (None, None)
        if proxy and host_of(proxy) in allowed_hosts:
            name = PurePosixPath(URL(proxy).path).name or "embed"
            spoiler = _under_cover(embed.url, part.content)
            # (Two previews of one address are one image, under one key.)
            key = embed_key(address or proxy)
            page = embed.url if embed.type not in ("image", "gifv") else None
            source = ImageSource(ref(key), proxy, name, None, True, spoiler, page=page)
            yield position, source


def embed_key(address: str) -> int:
    """The key of the image at `address` among its message's images: between EMBED_KEYS_FROM
    and SNOWFLAKES_FROM, where no attachment's ID lies. The address as Discord gives it, not
    decoded and encoded again, less a Discord link's renewable signature."""
    digest = int.from_bytes(hashlib.sha256(unsigned(address).encode()).digest()[:8], "big")
    return EMBED_KEYS_FROM + digest % (SNOWFLAKES_FROM - EMBED_KEYS_FROM)


def unsigned(address: str) -> str:
    """A Discord CDN link without its signature, which expires: given so in an embed's image,
    Discord renders it and keeps it fresh (reference.mdx, "Signed Attachment CDN URLs").
    Other links, and the rest of the query, as they are."""
    base, _, query = address.partition("?")
    if not query or host_of(address) not in DISCORD_MEDIA_HOSTS:
        return address
    kept = [p for p in query.split("&") if p and p.split("=")[0] not in _SIGNATURE]
    return f"{base}?{'&'.join(kept)}" if kept else base


def host_of(address: str) -> str | None:
    """None for an address yarl cannot read (a port past 65535, a broken IDNA name): a page's
    preview image or a webhook's embed may give any, and one must not stop the reading of
    its message's other images, nor of the history around it."""
    try:
        return URL(address).host
    except ValueError:  # (UnicodeError is one)
        return None


def lost_image(message: discord.Message, attachment_id: int, hosts: frozenset[str]) -> bool:
    """An indexed image is no longer in its message: an edit took it away (or suppressed its
    preview), one the bot did not see. Judged only for a message that was changed so."""
    if message.edited_at is None and not message.flags.suppress_embeds:
        return False
    return source_for(message, attachment_id, hosts) is None


def indexable_sources(
    message: discord.Message,
    ignore_channels: frozenset[int],
    allowed_hosts: frozenset[str],
    own_id: int | None,
) -> list[ImageSource]:
    """What the index takes from a message: never the bot's own or any command reply (they
    show images that are indexed already), not other bots', webhook posts yes."""
    if message.author.id == own_id or is_command_reply(message):
        return []
    if message.author.bot and message.webhook_id is None:
        return []
    if in_ignored(message.channel, ignore_channels):
        return []
    return image_sources(message, allowed_hosts)


def in_ignored(channel: object, ignore_channels: frozenset[int]) -> bool:
    """The channel is in IGNORE_CHANNELS, or a thread of one."""
    return bool(
        {getattr(channel, "id", None), getattr(channel, "parent_id", None)} & ignore_channels
    )


def source_for(
    message: discord.Message, attachment_id: int, allowed_hosts: frozenset[str]
) -> ImageSource | None:
    """The message's image with this (attachment or embed) id, at its current URL. An embed
    indexed by an older version is keyed by its position."""
    for source in image_sources(message, allowed_hosts):
        if source.ref.attachment_id == attachment_id:
            return source
    if attachment_id < EMBED_KEYS_FROM:
        ref = _ref_factory(message)
        for position, source in _embed_sources(_parts(message), allowed_hosts, ref):
            if position == attachment_id:
                return dataclasses.replace(source, ref=ref(position))
    return None


def _parts(message: discord.Message) -> list[discord.Message | discord.MessageSnapshot]:
    """The message and the messages it forwards, whose images it shows."""
    return [message, *message.message_snapshots]


def _under_cover(url: str | None, content: str) -> bool:
    """Whether the preview of the link `url` shows covered: the link is under a spoiler cover
    in the message's text; or the text has covers and the link is nowhere outside them
    (should Discord give a preview's address other than as it was typed, a spoiler is still
    never shown uncovered)."""
    covered = " ".join(_SPOILERED.findall(content or ""))
    if url is None or not covered:
        return False
    return url in covered or url not in _SPOILERED.sub(" ", content)


def _ref_factory(message: discord.Message) -> Callable[[int], ImageRef]:
    channel = message.channel
    parent_id = getattr(channel, "parent_id", None)
    guild_id = message.guild.id if message.guild else None

    def make(attachment_id: int) -> ImageRef:
        return ImageRef(
            guild_id=guild_id,
            channel_id=channel.id,
            message_id=message.id,
            attachment_id=attachment_id,
            author_id=message.author.id,
            created_at=message.created_at.timestamp(),
            parent_id=parent_id,
        )

    return make


def attachment_source(
    interaction: discord.Interaction, attachment: discord.Attachment
) -> ImageSource:
    """A slash command's image option: an upload that belongs to no message."""
    ref = ImageRef(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        message_id=interaction.id,
        attachment_id=attachment.id,
        author_id=interaction.user.id,
        created_at=interaction.created_at.timestamp(),
    )
    spoiler = is_spoiler(attachment)
    return ImageSource(
        ref,
        attachment.url,
        attachment.filename,
        attachment.size,
        spoiler=spoiler,
        alt_text=attachment.description,
        content_type=attachment.content_type,
    )


async def replied_sources(
    message: discord.Message, allowed_hosts: frozenset[str], *, every_attachment: bool = False
) -> list[ImageSource]:
    """The images of the message that `message` replies to (none when it replies to none);
    with `every_attachment`, its other files too, as `image_sources` gives them."""
    reference = message.reference
    if reference is None:
        return []
    target = reference.resolved
    if isinstance(target, discord.Message):
        found = image_sources(target, allowed_hosts, every_attachment=every_attachment)
        if found or not target.flags.forwarded:
            return found
        # A forward sent along without its snapshot: the message itself has it.
    if not reference.message_id:
        return []
    try:
        target = await message.channel.fetch_message(reference.message_id)
    except discord.NotFound:
        return []
    return image_sources(target, allowed_hosts, every_attachment=every_attachment)


async def example_source(
    message: discord.Message, allowed_hosts: frozenset[str]
) -> ImageSource | None:
    """The image a command with no words means: the message's first, else the first of the
    message it replies to. A file of its own that is not an image still counts when nothing
    else does, so that the user hears what is wrong with it."""
    found = image_sources(message, allowed_hosts) or await replied_sources(message, allowed_hosts)
    found = found or image_sources(message, allowed_hosts, every_attachment=True)
    return found[0] if found else None
