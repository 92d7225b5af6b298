"""Reading Discord's message history for the index: catching up after downtime, `!index`'s
backfill, and fetching an indexed image's message afresh (its URLs expire)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta

import discord

from bot.chat.access import ReadAccess
from bot.chat.permissions import can_read
from bot.chat.read_marks import ReadMarks
from bot.images.fetcher import ImageSource
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef

log = logging.getLogger(__name__)

Sources = Callable[[discord.Message], list[ImageSource]]


class CatchUpIncomplete(Exception):
    """Discord failed for now (a 5xx or a 429, once discord.py's own tries were spent) on some
    channels: the catch-up must run again, and no mark be written above them meanwhile."""

    def __init__(self, channel_ids: list[int]) -> None:
        shown = ", ".join(map(str, channel_ids[:5])) + (", ..." if len(channel_ids) > 5 else "")
        super().__init__(f"Discord failed to give the history of channel(s) {shown} for now")
        self.channel_ids = channel_ids


@dataclass
class Unread:
    """Where the stretches that earlier catch-ups failed to read begin: a failed one's start in
    every channel, an incomplete one's in the channels Discord failed on. Uploads seen live
    since then lie above such a stretch, so a later catch-up reads down to what was known
    below its start, not down to them."""

    everywhere: int | None = None
    channels: dict[int, int] = field(default_factory=dict)

    def below(self, before: int, channel_id: int | None = None) -> int:
        """Where what is known counts as read: in `channel_id`, or (None) in every channel."""
        starts = self.channels.values() if channel_id is None else [self.channels.get(channel_id)]
        return min(s for s in (before, self.everywhere, *starts) if s is not None)


def for_now(exc: discord.HTTPException) -> bool:
    """Discord failed only for now: a 5xx, or 429s until discord.py gave up retrying."""
    return exc.status >= 500 or exc.status == 429


Progress = Callable[[int, int], Awaitable[None]]
PROGRESS_EVERY = 100
ARCHIVE_MAX = timedelta(minutes=10080)  # a thread's longest auto-archive (channel.mdx)


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
    client: discord.Client,
    access: ReadAccess,
    indexer: Indexer,
    sources: Sources,
    limit: int,
    before: int,
    marks: ReadMarks,
    guilds: Collection[int] | None = None,
    unread: Unread | None = None,
) -> int:
    """Queues images posted while the bot was down or between two gateway sessions (whose
    events Discord never sends), in every channel with indexed images or a read mark, or
    begun meanwhile, that it can still read (a 403 is asked once, then remembered), and marks
    how far each was read. `before`: the snowflake of the session's start; images from then on
    arrive as events, and never count as where the reading stops. `guilds`: only these
    servers' channels. `unread`: what earlier catch-ups left unread, read now too."""
    queued = 0
    later: list[int] = []  # the channels Discord failed on for now
    index, below = indexer.index, (unread or Unread()).below
    known = {channel: guild for guild, channel in await index.channels()}
    sinces = await _newest_known(client, index, guilds, (below(before), before))
    begun = await _begun_meanwhile(client, index, marks, known, sinces, below(before))
    channels = marks.held() | known | {channel: guild for channel, (guild, _) in begun.items()}
    for channel_id in sorted(c for c, g in channels.items() if guilds is None or g in guilds):
        channel = client.get_channel(channel_id)
        if channel is None and (since := sinces.get(known.get(channel_id) or 0)) is not None:
            where = (channel_id, since, before)
            channel = await _archived_meanwhile(client, access, index, where, later)
        if not isinstance(channel, discord.abc.Messageable) or not access.can_read(channel_id):
            marks.unread(channel_id)
            continue
        if channel_id in begun:  # not from the first message seen there live: that is later
            last = begun[channel_id][1]
        else:
            newest = await index.last_message_id(channel_id, below(before, channel_id))
            last = newest or marks.first(channel_id) or 0
        missed = await _missed(channel, channel_id, last, before, limit, access, later)
        if missed is None:
            marks.unread(channel_id)
            continue
        # Oldest first: a catch-up cut short leaves its mark where the reading can go on.
        for message in reversed(missed):
            queued += await indexer.submit(sources(message))
        marks.read(channel_id, missed[0] if missed else None)
    if queued:
        log.info("queued %d image(s) posted while the bot was offline", queued)
    if later:
        raise CatchUpIncomplete(later)
    return queued


async def _newest_known(
    client: discord.Client,
    index: ImageIndex,
    guilds: Collection[int] | None,
    belows: tuple[int, int],
) -> dict[int, int]:
    """The newest message known in each available server that was read before (a server never
    read has its history read by `index` alone): below the first of `belows` (where earlier
    catch-ups failed) if anything is known there, else below the second (now)."""
    sinces = {}
    for guild in client.guilds:
        if guild.unavailable or (guilds is not None and guild.id not in guilds):
            continue
        for below in belows:
            if (since := await index.last_message_id(guild.id, below, server=True)) is not None:
                sinces[guild.id] = since
                break
    return sinces


async def _archived_meanwhile(
    client: discord.Client,
    access: ReadAccess,
    index: ImageIndex,
    where: tuple[int, int, int],
    later: list[int],
) -> discord.Thread | None:
    """A known channel missing from the cache: a thread archived, perhaps after images came
    while the bot was away, or a channel deleted meanwhile (a server comes with all its
    channels but only its active threads: gateway-events.mdx, "Guild Create Extra Fields").
    A thread is asked for only if written in at most a week (the longest auto-archive) before
    `since`, the newest message known in its server: an older one was archived before. Any
    other channel is asked for: the 404 removes what is kept of it."""
    channel_id, since, before = where
    newest = await index.last_message_id(channel_id, before)
    if newest is None or not access.can_read(channel_id):
        return None
    quiet = discord.utils.snowflake_time(since) - discord.utils.snowflake_time(newest)
    if quiet > ARCHIVE_MAX and await index.is_thread(channel_id):
        return None
    try:
        channel = await client.fetch_channel(channel_id)
    except discord.Forbidden:
        access.refused(channel_id)
        return None
    except discord.NotFound as exc:  # a channel deleted while the bot was away goes
        await access.gone(channel_id, exc)
        return None
    except (discord.HTTPException, discord.InvalidData) as exc:
        if isinstance(exc, discord.HTTPException) and for_now(exc):
            later.append(channel_id)
        else:
            log.info("cannot catch up on channel %s: %s", channel_id, exc)
        return None
    if not isinstance(channel, discord.Thread) or channel.guild.me is None:
        return None
    return channel if can_read(channel, channel.guild.me) else None


async def _begun_meanwhile(
    client: discord.Client,
    index: ImageIndex,
    marks: ReadMarks,
    known: Collection[int],
    sinces: dict[int, int],
    before: int,
) -> dict[int, tuple[int, int]]:
    """Channels and threads posted in since `sinces` (the newest message known in their
    server), with nothing known there below `before`: begun, or first written in, while the
    bot was away. A forum holds only threads (threads.mdx, "Forums"), so each of its posts is
    one; the active ones come with their server (gateway-events.mdx, "Guild Create":
    `threads`). {channel: (server, since)}."""
    begun: dict[int, tuple[int, int]] = {}
    for guild_id, since in sinces.items():
        guild = client.get_guild(guild_id)
        for channel in [*guild.channels, *guild.threads] if guild else []:
            newest = getattr(channel, "last_message_id", None) or 0
            if (
                newest > since
                and isinstance(channel, discord.abc.Messageable)
                and not marks.ignores(channel)
                and (
                    channel.id not in known
                    or await index.last_message_id(channel.id, before) is None
                )
            ):
                begun[channel.id] = (guild_id, since)
    return begun


async def _missed(
    channel: discord.abc.Messageable,
    channel_id: int,
    last: int,
    before: int,
    limit: int,
    access: ReadAccess,
    later: list[int],
) -> list[discord.Message] | None:
    """What the catch-up reads of the channel; None when Discord refused, or failed for now
    (then the channel is added to `later`)."""
    newest = getattr(channel, "last_message_id", None)
    if newest is not None and newest <= last:  # nothing since: no request (a page each)
        return []
    try:
        return await _newest_after(channel, last, before, limit)
    except discord.Forbidden:
        access.refused(channel_id)
    except discord.HTTPException as exc:
        again = for_now(exc)
        log.info("cannot catch up on channel %s%s: %s", channel_id, " for now" * again, exc)
        if again:
            later.append(channel_id)
    return None


async def _newest_after(
    channel: discord.abc.Messageable, last: int, before: int, limit: int
) -> list[discord.Message]:
    """The channel's messages after `last` and before `before`, newest first, at most
    `limit`: when more came since, the newest are the ones the index keeps. From `before` on
    they arrive as events; read again, they would take the places of the missed ones."""
    found = []
    async for message in channel.history(limit=limit, before=discord.Object(id=before)):
        if message.id <= last:
            break
        found.append(message)
    return found


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
