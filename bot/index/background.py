"""Background indexing: uploads are queued in the database, then embedded as capacity allows.

A queued upload survives restarts (only IDs are stored; the message is fetched again for a fresh
URL). Identical images are embedded once, by content hash. An outage costs time, never work:
when Discord, the network, the database or the model fails the whole batch, it waits (1 s,
doubling, at most RETRY_CAP_S, cut short by a new upload if the batch held all that was queued)
and is tried again; an upload that fails alone, or whose channel the bot cannot read for now,
waits on its own (bot.index.deferrals); only a failure that is the image's own (refused,
undecodable, gone) drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Iterable

from bot.images.decode import ImageError
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import Decoded
from bot.index.deferrals import Deferrals
from bot.index.embedding import embed_uploads
from bot.index.image_index import ImageIndex
from bot.index.progress import Progress
from bot.index.refs import ImageRef, Key
from bot.index.uploads import Batch, NoAccess, Resolver, Unavailable, Uploads
from bot.tasks import cancel_until_done
from bot.vision.checkpoints import ModelLoadError
from bot.vision.service import OutOfMemory, VisionService

log = logging.getLogger(__name__)

# Waits after a failure that is not the image's own; read at each use, so a test can scale them.
RETRY_START_S = 1.0
RETRY_CAP_S = 300.0


class Indexer:
    def __init__(
        self,
        index: ImageIndex,
        vision: VisionService,
        fetcher: MediaFetcher,
        resolve: Resolver,
        *,
        batch_size: int = 16,
        decode_ahead: bool | None = None,
    ) -> None:
        """`decode_ahead`: whether the next batch decodes while this one is embedded (by
        default where the model does not run on the CPU; see below)."""
        self.index = index
        self.vision = vision
        self.uploads = Uploads(fetcher, resolve)
        self.batch_size = batch_size
        self.progress = Progress()
        self._held: dict[Key, ImageSource] = {}  # seen while the database refused new work
        self._submitting = 0  # submits waiting for the database
        self._in_hand: set[Key] = set()  # the batch being indexed now, and the one fetched ahead
        self._ahead: Batch | None = None  # the next batch, fetched while this one is embedded
        self._deferrals = Deferrals()
        # On a CPU the next batch's decoding waits for this batch's model call, which it slowed
        # by taking the cores (through the indexer 21-27 against 15-16 ms per photo, 2-core
        # AMD Zen 5); its downloads, which wait on the network, go ahead. A GPU needs the
        # cores for nothing else, so there the next batch decodes ahead too.
        self._decode_ahead = vision.device.type != "cpu" if decode_ahead is None else decode_ahead
        self._wake = asyncio.Event()
        self._failed_whole_queue = False  # the last batch failed, and held all that was queued
        self._done = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="glimpse-indexer")
            self._wake.set()

    async def stop(self) -> None:
        """Stops after the current step; queued work stays in the database for the next start."""
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_until_done(task)
        if self._ahead is not None:  # its images stay queued for the next start
            ahead, self._ahead = self._ahead, None
            ahead.decode.set()  # else its shared downloads would wait to be decoded for good
            await cancel_until_done(ahead.fetching)
        self._in_hand = set()
        with contextlib.suppress(sqlite3.Error):
            await self._queue_held()
        with contextlib.suppress(sqlite3.Error):
            self.progress.log_summary(await self.index.pending_count(), force=True)

    @property
    def holding(self) -> bool:
        """Uploads wait in memory for the database (or are on their way to it): no read mark
        may be written until they are queued there, or a restart would lose them."""
        return bool(self._held) or self._submitting > 0

    def drop_held(self, message_ids: Collection[int]) -> None:
        """These messages are gone: their uploads held for a database that refused them are
        not queued when it answers again (deleted stays deleted)."""
        for key in [key for key in self._held if key[0] in message_ids]:
            del self._held[key]

    async def submit(self, sources: Iterable[ImageSource]) -> int:
        """Queues uploads in the database; if it is unavailable, holds them and keeps trying."""
        by_key = {source.ref.key: source for source in sources}
        if not by_key:
            return 0
        self._submitting += 1
        try:
            added = await self.index.add_pending(_refs(by_key), _alt_texts(by_key))
        except sqlite3.Error as exc:
            first = next(iter(by_key.values())).ref.message_id
            log.warning("cannot queue %d image(s) of message %s yet (%s); will retry",
                        len(by_key), first, exc)  # fmt: skip
            self._held.update(by_key)
            added = []
        finally:
            self._submitting -= 1
        # Only what was queued is fetched later; a skipped source's URL is not kept.
        self.uploads.urls.update((ref.key, by_key[ref.key]) for ref in added)
        if added or self._held:
            self._wake.set()
        return len(added)

    async def index_fetched(self, fetched: list[tuple[ImageRef, Decoded]]) -> None:
        """Queued images that a caller has downloaded and decoded already (an automatic
        description's), embedded and stored now from those pictures, so that they are never
        fetched again. Only queued ones are stored (an opted-out member's never are)."""
        refs = [ref for ref, _ in fetched if ref.key not in self._in_hand]
        if not refs:
            return
        decoded = {ref.key: picture for ref, picture in fetched}
        try:
            ready = await embed_uploads(self.index, self.vision, refs, decoded)
            self.progress.indexed += await self.index.settle(ready, [])
        except Exception as exc:  # the queue still holds them: the indexer tries again
            log.warning("%d fetched image(s) left to the indexer: %r", len(refs), exc)
            return
        for ref in refs:
            self.uploads.urls.pop(ref.key, None)
        async with self._done:
            self._done.notify_all()

    async def _queue_held(self) -> None:
        if self._held:
            held = dict(self._held)  # still held (see `holding`) until the database has them
            added = await self.index.add_pending(_refs(held), _alt_texts(held))
            for key in held:
                self._held.pop(key, None)
            self.uploads.urls.update((ref.key, held[ref.key]) for ref in added)

    async def wait_until_done(self, channel_ids: Collection[int], limit_s: float) -> bool:
        """Waits (at most `limit_s` s) until these channels hold nothing queued but `failing`."""
        late = self._deferrals.failing  # tried again in a minute at the soonest
        return await self.wait_while(lambda: self.index.pending_count(channel_ids, late), limit_s)

    async def wait_for(self, keys: Collection[Key], limit_s: float) -> bool:
        """Waits (at most `limit_s` seconds) until none of these images is queued."""
        return await self.wait_while(lambda: self.index.pending_among(keys), limit_s)

    async def wait_while(self, queued: Callable[[], Awaitable[int]], limit_s: float) -> bool:
        """False if something is still queued after `limit_s` seconds."""
        deadline = time.monotonic() + limit_s
        while await queued():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            async with self._done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), min(remaining, 0.5))
        return True

    async def _run(self) -> None:
        wait = RETRY_START_S
        while True:
            if await self._step():
                await self._wait_out(wait)
                wait = min(wait * 2, RETRY_CAP_S)
            else:
                wait = RETRY_START_S

    async def _wait_out(self, wait: float) -> None:
        """An outage's wait. When all that was queued fit in the batch that failed, the trouble
        may be those uploads' own (a link preview whose site is down): one queued meanwhile is
        tried at once with them, and if it comes through, they wait on their own (Deferrals)."""
        if self._failed_whole_queue:
            await self._woken(wait)
        else:
            await asyncio.sleep(wait)

    async def _woken(self, limit_s: float | None) -> None:
        """Until something is queued (or held) after the step began, at most `limit_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), limit_s)

    async def _step(self) -> bool:
        """One batch; True when it must wait (an outage, or a database that refuses work)."""
        refs: list[ImageRef] = []
        self._failed_whole_queue = False
        self._wake.clear()  # set again by what is queued from now on
        try:
            await self._queue_held()
            batch = self._ahead or await self._fetch_next(decode=True)
            self._ahead = None
            refs = batch.refs if batch else []
            if batch is None:  # until an upload comes, or a deferred one may be tried again
                self.progress.log_summary(len(self._deferrals.waiting()))
                await self._woken(self._deferrals.next_in())
                return False
            waiting = await self._process(batch)
            self.progress.log_summary(await self.index.pending_count())
        except (sqlite3.Error, ModelLoadError, OutOfMemory) as exc:  # the admin's: no image pays
            what = "the index database" if isinstance(exc, sqlite3.Error) else "the search model"
            log.error("%s refused work (%s); indexing waits and retries", what, exc)
            waiting = True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("indexing a batch of %d images failed; will retry", len(refs))
            with contextlib.suppress(sqlite3.Error):
                dropped = await self.index.record_failure(refs)
                self.progress.dropped_for("failed 3 times", dropped)
            waiting = True
        async with self._done:
            self._done.notify_all()
        return waiting

    async def _fetch_next(self, *, decode: bool) -> Batch | None:
        """The oldest queued images not in hand nor deferred (Deferrals.choose), their fetching
        begun; None if there are none."""
        deferred, suspects = self._deferrals.waiting(), self._deferrals.suspects
        asked = self.batch_size + len(self._in_hand) + len(deferred) + len(suspects)
        known = set(self.uploads.urls)
        queued = await self.index.pending(asked)
        if len(queued) < asked:  # the whole queue: what is kept for no row of it is of no use
            keys = {ref.key for ref in queued}
            self.uploads.forget(known - keys - self._in_hand)
            self._deferrals.keep_only(keys)
        skipped = self._in_hand | deferred
        refs = self._deferrals.choose([r for r in queued if r.key not in skipped], self.batch_size)
        if not refs:
            return None
        self._in_hand.update(ref.key for ref in refs)
        return self.uploads.fetch(refs, decode=decode)

    async def _process(self, batch: Batch) -> bool:
        """Indexes what it can of a batch; True when all of it must wait (an outage)."""
        batch.decode.set()
        try:
            return await self._index(batch)
        finally:  # done, or to be taken up again from the queue
            self._in_hand.difference_update(ref.key for ref in batch.refs)

    async def _index(self, batch: Batch) -> bool:
        refs = batch.refs
        fetched: dict[Key, Decoded] = {}
        gone: list[ImageRef] = []
        waiting: list[ImageRef] = []
        shut: list[ImageRef] = []  # in a channel the bot cannot read now: no outage
        for ref, outcome in zip(refs, await batch.fetching, strict=True):
            if isinstance(outcome, Decoded):
                fetched[ref.key] = outcome
            elif isinstance(outcome, Unavailable):
                log.debug("image %s of message %s must wait: %s", *ref.key[::-1], outcome)
                (shut if isinstance(outcome, NoAccess) else waiting).append(ref)
            else:
                reason = outcome.code if isinstance(outcome, ImageError) else "gone"
                log.info("not indexing image %s of message %s: %s", *ref.key[::-1], outcome)
                self.progress.dropped_for(reason)
                gone.append(ref)
        if not waiting:
            # The next batch is fetched while this one is embedded: one after the other, the
            # model sat idle while each batch crossed the network. Not during an outage, which
            # the step's wait paces. A database that refuses this query fails the next step.
            with contextlib.suppress(sqlite3.Error):
                self._ahead = await self._fetch_next(decode=self._decode_ahead)
        ready = await embed_uploads(
            self.index, self.vision, [r for r in refs if r.key in fetched], fetched
        )
        self.progress.indexed += await self.index.settle(ready, gone)
        for ref in refs:
            if ref not in waiting:
                self.uploads.urls.pop(ref.key, None)
        outage = len(waiting) == len(refs)
        self._deferrals.failed((ref.key for ref in waiting), defer=not outage)
        self._deferrals.batch_done((ref.key for ref in refs), whole_failed=outage)
        self._deferrals.failed((ref.key for ref in shut), defer=True)
        self._failed_whole_queue = outage and len(refs) < self.batch_size
        return outage


def _refs(sources: dict[Key, ImageSource]) -> list[ImageRef]:
    return [source.ref for source in sources.values()]


def _alt_texts(sources: dict[Key, ImageSource]) -> dict[Key, str | None]:
    return {key: source.alt_text for key, source in sources.items()}
