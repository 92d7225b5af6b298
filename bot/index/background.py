"""Background indexing: uploads are queued in the database, then embedded as capacity allows.

A queued upload survives restarts (only IDs are stored; the message is fetched again for a fresh
URL). Identical images are embedded once, by content hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Iterable

import numpy as np
from PIL import Image

from bot.images.decode import ImageError
from bot.images.download import DownloadError
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import Decoded
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef, Key
from bot.vision.service import VisionService

log = logging.getLogger(__name__)

MIN_BACKOFF_S, MAX_BACKOFF_S = 0.25, 30.0

Resolver = Callable[[ImageRef], Awaitable[ImageSource | None]]


class Indexer:
    def __init__(
        self,
        index: ImageIndex,
        vision: VisionService,
        fetcher: MediaFetcher,
        resolve: Resolver,
        *,
        batch_size: int = 16,
    ) -> None:
        self.index = index
        self.vision = vision
        self.fetcher = fetcher
        self.resolve = resolve
        self.batch_size = batch_size
        self._urls: dict[Key, ImageSource] = {}
        self._held: dict[Key, ImageRef] = {}  # seen while the database refused new work
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="glimpse-indexer")
            self._wake.set()

    async def stop(self) -> None:
        """Stops after the current step; queued work stays in the database for the next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(sqlite3.Error):
            await self._queue_held()

    async def submit(self, sources: Iterable[ImageSource]) -> int:
        """Queues uploads in the database; if it is unavailable, holds them and keeps trying."""
        sources = list(sources)
        if not sources:
            return 0
        for source in sources:
            self._urls[source.ref.key] = source
        refs = [source.ref for source in sources]
        try:
            added = await self.index.add_pending(refs)
        except sqlite3.Error as exc:
            log.warning(
                "cannot queue %d image(s) of message %s yet (%s); will retry",
                len(refs),
                refs[0].message_id,
                exc,
            )
            self._held.update((ref.key, ref) for ref in refs)
            added = 0
        self._wake.set()
        return added

    async def _queue_held(self) -> None:
        if self._held:
            await self.index.add_pending(self._held.values())
            self._held.clear()

    async def wait_until_done(self, channel_ids: Collection[int], limit_s: float) -> bool:
        """Waits (at most `limit_s` seconds) until nothing is queued in these channels."""
        deadline = time.monotonic() + limit_s
        while await self.index.pending_count(channel_ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            async with self._progress:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), min(remaining, 0.5))
        return True

    async def _run(self) -> None:
        backoff = MIN_BACKOFF_S
        while True:
            try:
                await self._queue_held()
                refs = await self.index.pending(self.batch_size)
            except sqlite3.Error as exc:
                log.warning(
                    "the index database is unavailable (%s); retrying in %.0f s", exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = MIN_BACKOFF_S
            if not refs:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._process(refs)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("indexing a batch of %d images failed; will retry", len(refs))
                with contextlib.suppress(sqlite3.Error):
                    await self.index.record_failure(refs)
                await asyncio.sleep(1)
            async with self._progress:
                self._progress.notify_all()

    async def _process(self, refs: list[ImageRef]) -> None:
        ready: list[tuple[ImageRef, str, np.ndarray]] = []
        to_embed: dict[str, list[ImageRef]] = {}
        images: dict[str, Image.Image] = {}
        gone: list[ImageRef] = []
        retry: list[ImageRef] = []
        for ref in refs:
            try:
                fetched = await self._fetch(ref)
            except ImageError as exc:
                log.info("not indexing image %s of message %s: %s", *ref.key[::-1], exc)
                gone.append(ref)
                continue
            except DownloadError as exc:
                log.info("could not fetch image %s of message %s: %s", *ref.key[::-1], exc)
                retry.append(ref)
                continue
            if fetched is None:
                gone.append(ref)
            elif fetched.digest in to_embed:
                to_embed[fetched.digest].append(ref)
            elif (known := await self.index.embedding_for_hash(fetched.digest)) is not None:
                ready.append((ref, fetched.digest, known))
            else:
                to_embed[fetched.digest] = [ref]
                images[fetched.digest] = fetched.image
        if to_embed:
            vectors = await self.vision.embed_images(list(images.values()), background=True)
            for (digest, twins), vector in zip(to_embed.items(), vectors, strict=True):
                ready.extend((ref, digest, vector) for ref in twins)
        dropped = await self.index.settle(ready, gone, retry)
        if dropped:
            log.warning("gave up on %d image(s) after repeated download failures", dropped)
        for ref in refs:
            self._urls.pop(ref.key, None)
        if retry:
            await asyncio.sleep(1.0)  # a failing CDN or network gets a moment before the retry

    async def _fetch(self, ref: ImageRef) -> Decoded | None:
        source = self._urls.get(ref.key) or await self.resolve(ref)
        if source is None:
            return None
        return await self.fetcher.fetch(source)
