"""Automatic alt text, as members see it: which images of a message get a description, and the
reply's lines.

Only image attachments (a forward's too) posted without alt text, by a member: never a bot's
post (webhook posts count as members'), nor any application's answer to a command; link
previews and other embeds are not described. Each line starts with "Automatic alt text:", so a
screen reader says first that it is automatic, then the caption; the lines are numbered at
their end when there are several, a spoilered image's description goes under the same cover, and the
whole fits in one message.
"""

from __future__ import annotations

import discord

from bot import wording
from bot.chat.fitting import fit_rendered
from bot.chat.sources import image_sources, is_command_reply
from bot.images.fetcher import ImageSource
from bot.markdown import as_typed, spoiler

Described = tuple[str, ImageSource]  # a caption, and the image it describes


def undescribed(
    message: discord.Message, own_id: int | None, allowed_hosts: frozenset[str]
) -> list[ImageSource]:
    """A member's attached (or forwarded) images without alt text, in message order."""
    if message.author.id == own_id or is_command_reply(message):
        return []
    if message.author.bot and message.webhook_id is None:
        return []
    found = image_sources(message, allowed_hosts)
    return [s for s in found if not s.from_embed and not (s.alt_text or "").strip()]


def reply_text(described: list[Described]) -> str:
    """One line per image, numbered when there are several, shortened to fit one message."""

    def render(texts: list[str]) -> str:
        lines = []
        for number, (text, (_, source)) in enumerate(zip(texts, described, strict=True), 1):
            text = spoiler(text) if source.spoiler else as_typed(text)
            lines.append(wording.automatic_alt_text(text, number, len(described)))
        return "\n".join(lines)

    return fit_rendered([" ".join(caption.split()) for caption, _ in described], render)
