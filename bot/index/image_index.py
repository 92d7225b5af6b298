"""The image index as its callers see it: async methods, the SQL running on the db thread.

Callers `await index.search(...)` and never learn about threads: every call goes to one
single-thread lane, so SQLite sees a single writer and the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.index.alt_text import Terms
from bot.index.described import Description
from bot.index.ranking import Earlier, Excluded
from bot.index.refs import Hit, ImageRef, Key
from bot.index.store import Embedded, IndexStore, ReadMark
from bot.tasks import cancel_until_done
from bot.workers import Workers

log = logging.getLogger(__name__)

# RETENTION_DAYS is applied this often (and at every write), so that an image ages out on a
# server where nothing new is posted: a 24th of the retention, at most an hour.
AGE_OUT_EVERY_S = 3600.0
# Messages removed as deleted are remembered this long (the most recent ones), so that their
# uploads are not queued again by work that read them before: an edit's handling under way, a
# repost check waiting its turn, catch-up's or `!index`'s pages of history.
REMEMBERED_DELETIONS = 10_000


class ImageIndex:
    def __init__(self, store: IndexStore, workers: Workers) -> None:
        self._store = store
        self._workers = workers
        self._ageing: asyncio.Task[None] | None = None
        self._deleted: OrderedDict[int, None] = OrderedDict()

    @classmethod
    async def open(
        cls, path: Path, model_id: str, workers: Workers, *, per_channel: int, retention_days: float
    ) -> ImageIndex:
        """Opens (or creates) the database, re-queues another model's rows, applies the bounds."""
        store = await workers.run(
            "db", IndexStore, path, model_id, per_channel=per_channel, retention_days=retention_days
        )
        index = cls(store, workers)
        requeued = await workers.run("db", store.requeue_stale)
        if requeued:
            log.info("SEARCH_MODEL changed: %d image(s) queued to be embedded again", requeued)
        await workers.run("db", store.prune)
        if retention_days > 0:
            every_s = min(AGE_OUT_EVERY_S, retention_days * 86400 / 24)
            index._ageing = asyncio.create_task(index._age_out(every_s), name="glimpse-retention")
        return index

    async def close(self) -> None:
        if self._ageing is not None:
            await cancel_until_done(self._ageing)
        await self._workers.run("db", self._store.close)

    async def _age_out(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                if removed := await self._workers.run("db", self._store.prune):
                    log.info("%d image(s) older than RETENTION_DAYS removed", removed)
            except sqlite3.Error as exc:  # (a full disk: the admin's to fix; tried again later)
                log.error("the index database refused to apply RETENTION_DAYS (%s)", exc)
            except Exception:  # ours; the next turn may still work, so the task goes on
                log.exception("applying RETENTION_DAYS failed")

    # -- the queue of images to embed --------------------------------------------------------

    async def add_pending(
        self, refs: Iterable[ImageRef], alt_texts: Mapping[Key, str | None] | None = None
    ) -> list[ImageRef]:
        """Queues uploads to embed, with their alt text; returns those that were new (never
        those of a message removed as deleted: deleted stays deleted)."""
        kept = [ref for ref in refs if ref.message_id not in self._deleted]
        return await self._workers.run("db", self._store.add_pending, kept, alt_texts)

    async def pending(self, limit: int) -> list[ImageRef]:
        return await self._workers.run("db", self._store.pending, limit)

    async def pending_count(
        self, channel_ids: Collection[int] | None = None, skipping: Collection[Key] = ()
    ) -> int:
        """Queued in these channels (all, if None), not counting the keys in `skipping`."""
        run = self._workers.run
        return await run("db", self._store.pending_count, channel_ids, frozenset(skipping))

    async def pending_up_to(self, channel_ids: Collection[int], message_id: int) -> int:
        """Queued in these channels from messages up to `message_id` (that one's own too)."""
        run = self._workers.run
        return await run("db", self._store.pending_up_to, list(channel_ids), message_id)

    async def pending_among(self, keys: Collection[Key]) -> int:
        return await self._workers.run("db", self._store.pending_among, list(keys))

    async def record_failure(self, refs: list[ImageRef]) -> int:
        return await self._workers.run("db", self._store.record_failure, refs)

    async def embedding_for_hash(
        self, content_hash: str, channel_ids: Collection[int]
    ) -> npt.NDArray[np.float32] | None:
        """The (frames, dim) embedding of an image with these bytes indexed in these channels,
        if any."""
        run = self._workers.run
        return await run("db", self._store.embedding_for_hash, content_hash, channel_ids)

    async def embeddings_for_hashes(
        self, content_hashes: Collection[str]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Of these contents, those indexed already: their (frames, dim) embeddings by hash."""
        return await self._workers.run("db", self._store.embeddings_for_hashes, content_hashes)

    async def of_message(self, message_id: int) -> dict[Key, tuple[str, npt.NDArray[np.float32]]]:
        """Each indexed image of the message: its content hash and (frames, dim) embedding."""
        return await self._workers.run("db", self._store.of_message, message_id)

    async def settle(self, embedded: Sequence[Embedded], gone: list[ImageRef]) -> int:
        """One batch's outcome in one call: store what was embedded, drop what is gone;
        returns how many images were stored (one removed meanwhile is not)."""
        return await self._workers.run("db", self._settle, embedded, gone)

    def _settle(self, embedded: Sequence[Embedded], gone: list[ImageRef]) -> int:
        stored = self._store.add(embedded)  # nothing to store: 0, no transaction
        if gone:
            self._store.drop_pending(gone)
        return stored

    # -- members who opted out ---------------------------------------------------------------

    def keeps_out(self, guild_id: int | None, author_id: int, message_id: int) -> bool:
        """Read from memory: asked for every message, it must not wait for the database."""
        return self._store.keeps_out(guild_id, author_id, message_id)

    async def opt_out(self, guild_id: int | None, author_id: int) -> int:
        return await self._workers.run("db", self._store.opt_out, guild_id, author_id)

    async def opt_in(self, guild_id: int | None, author_id: int, message_id: int) -> bool:
        return await self._workers.run("db", self._store.opt_in, guild_id, author_id, message_id)

    # -- channels that check reposts ---------------------------------------------------------

    def checks_reposts(self, channel_id: int) -> bool:
        """Read from memory, like `keeps_out`."""
        return channel_id in self._store.repost_channels

    async def set_reposts(self, guild_id: int, channel_id: int, on: bool) -> bool:
        """False when the channel already was so."""
        return await self._workers.run("db", self._store.set_reposts, guild_id, channel_id, on)

    # -- channels that describe images without alt text ----------------------------------------

    def describes_images(self, channel_id: int) -> bool:
        """Read from memory, like `keeps_out`."""
        return channel_id in self._store.alt_text_channels

    async def set_alt_text(self, guild_id: int, channel_id: int, on: bool) -> bool:
        """False when the channel already was so."""
        return await self._workers.run("db", self._store.set_alt_text, guild_id, channel_id, on)

    # -- the descriptions posted there (bot.index.described) ----------------------------------

    async def add_description(self, description: Description) -> None:
        await self._workers.run("db", self._store.add_description, description)

    async def description(self, description_id: int) -> Description | None:
        """The description the bot posted as this message, if it is one."""
        return await self._workers.run("db", self._store.description, description_id)

    async def descriptions_of(self, message_id: int) -> list[Description]:
        return await self._workers.run("db", self._store.descriptions_of, message_id)

    async def forget_descriptions(self, description_ids: Collection[int]) -> None:
        await self._workers.run("db", self._store.forget_descriptions, list(description_ids))

    # -- searching and counting -------------------------------------------------------------

    async def search(
        self,
        query: npt.ArrayLike,
        channel_ids: Collection[int],
        top: int,
        *,
        terms: Terms = (),
        excluded: Excluded | None = None,
    ) -> list[Hit]:
        """See `bot.index.ranking.rank`."""
        return await self._workers.run(
            "db", self._store.search, query, channel_ids, top, terms=terms, excluded=excluded
        )

    async def earlier(
        self,
        content_hash: str,
        frames: npt.ArrayLike,
        channel_ids: Collection[int],
        before: int,
        min_score: float,
    ) -> list[Earlier]:
        """See `bot.index.ranking.earlier`."""
        return await self._workers.run(
            "db", self._store.earlier, content_hash, frames, channel_ids, before, min_score
        )

    async def count(self, channel_ids: Collection[int] | None = None) -> int:
        return await self._workers.run("db", self._store.count, channel_ids)

    async def guilds(self) -> set[int]:
        """Every server anything is kept for (see `bot.index.queries.guilds`)."""
        return await self._workers.run("db", self._store.guilds)

    async def channels(self) -> list[tuple[int | None, int]]:
        return await self._workers.run("db", self._store.channels)

    async def is_thread(self, channel_id: int) -> bool:
        return await self._workers.run("db", self._store.is_thread, channel_id)

    async def threads_under(self, parent_ids: Collection[int]) -> list[tuple[int, int]]:
        """(thread_id, parent_id) of the threads of these channels that hold indexed images."""
        return await self._workers.run("db", self._store.threads_under, list(parent_ids))

    async def last_message_id(
        self, channel_id: int, before: int | None = None, *, server: bool = False
    ) -> int | None:
        run = self._workers.run
        return await run("db", self._store.last_message_id, channel_id, before, server=server)

    async def mark_read(self, marks: Iterable[ReadMark]) -> None:
        await self._workers.run("db", self._store.mark_read, list(marks))

    # -- removal ---------------------------------------------------------------------------

    async def remove_messages(self, message_ids: Iterable[int]) -> int:
        """These messages are deleted: their images go, and are never queued again."""
        ids = list(message_ids)
        self._deleted.update(dict.fromkeys(ids))
        while len(self._deleted) > REMEMBERED_DELETIONS:
            self._deleted.popitem(last=False)
        return await self._workers.run("db", self._store.remove_messages, ids)

    async def set_alt_texts(self, message_id: int, alt_texts: Mapping[int, str | None]) -> int:
        return await self._workers.run("db", self._store.set_alt_texts, message_id, alt_texts)

    async def remove_images(self, keys: Collection[Key]) -> int:
        return await self._workers.run("db", self._store.remove_images, list(keys))

    async def keep_only_attachments(self, message_id: int, attachment_ids: list[int]) -> int:
        return await self._workers.run(
            "db", self._store.keep_only_attachments, message_id, attachment_ids
        )

    async def remove_channel(self, channel_id: int) -> int:
        return await self._workers.run("db", self._store.remove_channel, channel_id)

    async def remove_ignored(self, channel_ids: Collection[int]) -> int:
        return await self._workers.run("db", self._store.remove_ignored, channel_ids)

    async def remove_guild(self, guild_id: int) -> int:
        return await self._workers.run("db", self._store.remove_guild, guild_id)

    async def forget_author(self, guild_id: int | None, author_id: int, message_id: int) -> int:
        """Removes the author's images here; their uploads from before the `forget` message
        `message_id` never come back (catch-up and `index` read them again)."""
        run = self._workers.run
        return await run("db", self._store.forget_author, guild_id, author_id, message_id)
