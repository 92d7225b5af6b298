"""Reading Discord's message history for the index: catching up after downtime, `!index`'s
backfill, and fetching an indexed image's message afresh (its URLs expire)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord

from bot.chat.access import ReadAccess
from bot.images.fetcher import ImageSource
from bot.index.background import Indexer
from bot.index.refs import ImageRef

log = logging.getLogger(__name__)

Sources = Callable[[discord.Message], list[ImageSource]]
Progress = Callable[[int, int], Awaitable[None]]
PROGRESS_EVERY = 100


async def message_of(client: discord.Client, ref: ImageRef) -> discord.Message | None:
    """The message an index entry points at, in one request; None when the channel holds no
    messages. Raises discord.NotFound or discord.Forbidden."""
    channel = client.get_channel(ref.channel_id)
    if channel is None:  # an archived thread, say: no need to fetch the channel first
        partial = client.get_partial_messageable(ref.channel_id, guild_id=ref.guild_id)
        return await partial.fetch_message(ref.message_id)
    if not isinstance(channel, discord.abc.Messageable):
        return None
    return await channel.fetch_message(ref.message_id)


async def catch_up(
    client: discord.Client, access: ReadAccess, indexer: Indexer, sources: Sources, limit: int
) -> int:
    """Queues images posted while the bot was down or between two gateway sessions (whose
    events Discord never sends), in every channel already indexed that it can still read (a 403
    is asked once, then remembered)."""
    queued = 0
    index = indexer.index
    for _guild_id, channel_id in await index.channels():
        channel = client.get_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable) or not access.can_read(channel_id):
            continue
        last = await index.last_message_id(channel_id) or 0
        try:
            # Newest first, down to the last image indexed: when more than `limit` messages
            # came since, the newest are the ones the index keeps.
            async for message in channel.history(limit=limit):
                if message.id <= last:
                    break
                queued += await indexer.submit(sources(message))
        except discord.Forbidden:
            access.refused(channel_id)
        except discord.HTTPException as exc:
            log.info("cannot catch up on channel %s: %s", channel_id, exc)
    if queued:
        log.info("queued %d image(s) posted while the bot was offline", queued)
    return queued


async def backfill(
    channel: discord.abc.Messageable,
    indexer: Indexer,
    sources: Sources,
    limit: int,
    progress: Progress,
) -> tuple[int, int]:
    """Queues the channel's earlier images; returns (messages read, images queued)."""
    seen = queued = 0
    async for message in channel.history(limit=limit):
        seen += 1
        queued += await indexer.submit(sources(message))
        if seen % PROGRESS_EVERY == 0:
            await progress(seen, queued)
    return seen, queued
