"""Which images a Discord message carries, and where Discord says they can be fetched.

Only URLs from Discord's own payloads are used: attachment URLs as given, and for embeds only
the media proxy's URL (never the original site's), so the bot never fetches arbitrary links.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath

import discord
from yarl import URL

from bot.images.decode import IMAGE_EXTENSIONS
from bot.images.fetcher import ImageSource
from bot.index.refs import ImageRef

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
#: Replies to slash commands and context menus (message.mdx, "Message Types").
COMMAND_REPLY_TYPES = frozenset(
    {discord.MessageType.chat_input_command, discord.MessageType.context_menu_command}
)
_SPOILERED = re.compile(r"\|\|(.+?)\|\|", re.DOTALL)


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
    forwarding message's own.

    `every_attachment` keeps files that do not look like images, so that a user who attached
    one to a command hears what is wrong with it instead of being ignored.
    """
    ref = _ref_factory(message)
    parts: list[discord.Message | discord.MessageSnapshot] = [message]
    parts += message.message_snapshots
    sources = [
        ImageSource(
            ref(a.id), a.url, a.filename, a.size, spoiler=is_spoiler(a), alt_text=a.description
        )
        for part in parts
        for a in part.attachments
        if every_attachment or is_image_attachment(a)
    ]
    # Embeds have no ID of their own; their position (own first, then the snapshot's) is
    # stable, as a snapshot never changes (message.mdx, "Message Forwarding").
    embeds = [(part, embed) for part in parts for embed in part.embeds]
    for position, (part, embed) in enumerate(embeds):
        proxy = (embed.image.proxy_url if embed.image else None) or (
            embed.thumbnail.proxy_url if embed.type in ("image", "gifv") else None
        )
        if proxy and URL(proxy).host in allowed_hosts:
            name = PurePosixPath(URL(proxy).path).name or "embed"
            spoiler = embed.url is not None and embed.url in _spoilered_text(part.content)
            sources.append(ImageSource(ref(position), proxy, name, None, True, spoiler))
    return sources


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
    """The message's image with this (attachment or embed) id, at its current URL."""
    for source in image_sources(message, allowed_hosts):
        if source.ref.attachment_id == attachment_id:
            return source
    return None


def _spoilered_text(content: str) -> str:
    """The parts of a message's text under spoiler covers: a link there previews covered."""
    return " ".join(_SPOILERED.findall(content or ""))


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
    )


async def replied_sources(
    message: discord.Message, allowed_hosts: frozenset[str]
) -> list[ImageSource]:
    """The images of the message that `message` replies to (none when it replies to none)."""
    reference = message.reference
    if reference is None:
        return []
    target = reference.resolved
    if isinstance(target, discord.Message):
        found = image_sources(target, allowed_hosts)
        if found or not target.flags.forwarded:
            return found
        # A forward sent along without its snapshot: the message itself has it.
    if not reference.message_id:
        return []
    try:
        target = await message.channel.fetch_message(reference.message_id)
    except discord.NotFound:
        return []
    return image_sources(target, allowed_hosts)


async def example_source(
    message: discord.Message, allowed_hosts: frozenset[str]
) -> ImageSource | None:
    """The image a command with no words means: the message's first, else the first of the
    message it replies to. A file that is not an image still counts when nothing else does,
    so that the user hears what is wrong with it."""
    own = image_sources(message, allowed_hosts)
    if not own:
        own = image_sources(message, allowed_hosts, every_attachment=True)
    found = own or await replied_sources(message, allowed_hosts)
    return found[0] if found else None
