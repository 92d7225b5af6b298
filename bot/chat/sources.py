"""Which images a Discord message carries, and where Discord says they can be fetched.

Only URLs from Discord's own payloads are used: attachment URLs as given, and for embeds only
the media proxy's URL (never the original site's), so the bot never fetches arbitrary links.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

import discord
from yarl import URL

from bot.images.decode import IMAGE_EXTENSIONS
from bot.images.fetcher import ImageSource
from bot.index.refs import ImageRef

DISCORD_MEDIA_HOSTS = frozenset(
    {"cdn.discordapp.com", "media.discordapp.net", "images-ext-1.discordapp.net"}
)


def media_hosts(api_url: str) -> frozenset[str]:
    """Discord's media hosts, plus the API's own host when an admin puts a proxy in front."""
    host = URL(api_url).host
    return DISCORD_MEDIA_HOSTS | ({host} if host else set())


def is_image_attachment(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type.startswith("image/"):
        return True
    return PurePosixPath(attachment.filename.lower()).suffix in IMAGE_EXTENSIONS


def image_sources(
    message: discord.Message, allowed_hosts: frozenset[str], *, every_attachment: bool = False
) -> list[ImageSource]:
    """Attachments first, then image embeds through the media proxy, in message order.

    `every_attachment` keeps files that do not look like images, so that a user who attached
    one to a command hears what is wrong with it instead of being ignored.
    """
    ref = _ref_factory(message)
    sources = [
        ImageSource(ref(a.id), a.url, a.filename, a.size)
        for a in message.attachments
        if every_attachment or is_image_attachment(a)
    ]
    for position, embed in enumerate(message.embeds):
        proxy = (embed.image.proxy_url if embed.image else None) or (
            embed.thumbnail.proxy_url if embed.type in ("image", "gifv") else None
        )
        if proxy and URL(proxy).host in allowed_hosts:
            # Embeds have no ID of their own; their position is stable within the message.
            name = PurePosixPath(URL(proxy).path).name or "embed"
            sources.append(ImageSource(ref(position), proxy, name, None, from_embed=True))
    return sources


def indexable_sources(
    message: discord.Message, ignore_channels: frozenset[int], allowed_hosts: frozenset[str]
) -> list[ImageSource]:
    """What the index takes from a message: not the bot's own, not other bots', webhooks yes."""
    if message.author.bot and message.webhook_id is None:
        return []
    if {message.channel.id, getattr(message.channel, "parent_id", None)} & ignore_channels:
        return []
    return image_sources(message, allowed_hosts)


def source_for(
    message: discord.Message, attachment_id: int, allowed_hosts: frozenset[str]
) -> ImageSource | None:
    """The message's image with this (attachment or embed) id, at its current URL."""
    for source in image_sources(message, allowed_hosts):
        if source.ref.attachment_id == attachment_id:
            return source
    return None


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
    return ImageSource(ref, attachment.url, attachment.filename, attachment.size)
