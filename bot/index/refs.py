"""What the index stores about an image: Discord IDs only (attachment URLs expire)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Key = tuple[int, int]  # (message_id, attachment_id)

# A link preview's attachment_id is made from its image's address (bot.chat.sources.embed_key),
# between these two: below a snowflake (an attachment's ID is one, 2^22 and up, as its creation
# time counts from bit 22: reference.mdx, "Snowflakes"), above the positions (0, 1, ...) by which
# older versions keyed previews.
EMBED_KEYS_FROM, SNOWFLAKES_FROM = 1 << 10, 1 << 22
Member = tuple[int, int]  # (guild_id, author_id); guild 0 for a member's DM with the bot

# The columns of an ImageRef, in the order of its fields, as both tables name them.
REF_COLUMNS = "guild_id, channel_id, message_id, attachment_id, author_id, created_at, parent_id"


@dataclass(frozen=True)
class ImageRef:
    """Identifies one image in Discord."""

    guild_id: int | None  # None in DMs
    channel_id: int  # the channel, thread or DM channel
    message_id: int
    attachment_id: int  # for an embed image, a synthetic id (EMBED_KEYS_FROM and up)
    author_id: int
    created_at: float  # unix seconds
    parent_id: int | None = None  # the thread's parent channel, if channel_id is a thread

    @property
    def key(self) -> Key:
        return (self.message_id, self.attachment_id)


@dataclass(frozen=True)
class Hit:
    ref: ImageRef
    score: float  # cosine similarity
    alt: bool = False  # its alt text says what the text query says (bot.index.ranking)


def ref_from_row(row: Iterable[Any]) -> ImageRef:
    guild, channel, message, attachment, author, created, parent = row
    return ImageRef(guild, channel, message, attachment, author, created, parent)


def ref_params(ref: ImageRef) -> tuple[int | float | None, ...]:
    return (
        ref.guild_id,
        ref.channel_id,
        ref.message_id,
        ref.attachment_id,
        ref.author_id,
        float(ref.created_at),
        ref.parent_id,
    )


def member_of(guild_id: int | None, author_id: int) -> Member:
    return (guild_id or 0, author_id)
