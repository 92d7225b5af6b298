"""The indexer's downloads: a batch of queued uploads fetched together, and what became of each.

A queued upload's URL is used while it is fresh; after a restart, or once Discord refuses it as
expired, Discord is asked for a fresh one, one question at a time. A batch's decoding can wait
for a signal while its downloads go ahead (`Batch.decode`), so that the next batch crosses the
network while the model runs without taking the cores from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.images.decode import ImageError
from bot.images.download import DownloadError
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import Decoded
from bot.index.refs import ImageRef, Key

# A batch's downloads in flight at once. Discord's CDN takes tens to hundreds of milliseconds to
# answer each; one at a time, the model sat idle for most of a batch. A few at once hide that
# wait while bounding the downloaded bytes held together (MAX_IMAGE_BYTES each), those waiting
# to be decoded included. Fresh URLs asked of Discord's API still go one at a time.
FETCHES_AT_ONCE = 8

Resolver = Callable[[ImageRef], Awaitable[ImageSource | None]]


class Unavailable(Exception):
    """Discord or the network failed for now; the work waits and is tried again."""


class NoAccess(Unavailable):
    """The bot cannot read the image's channel for now (its permissions, or a 403): the image
    stays queued, each such one waiting on its own, until it can (README, "Lost access")."""


class Gone(Exception):
    """The image's message or attachment no longer exists."""


Outcome = Decoded | Unavailable | ImageError | Gone  # what became of one image's fetch


@dataclass(frozen=True)
class Batch:
    refs: list[ImageRef]
    decode: asyncio.Event  # until it is set, the batch downloads but decodes nothing
    fetching: asyncio.Task[list[Outcome]]  # each ref's outcome, in order


class Uploads:
    def __init__(self, fetcher: MediaFetcher, resolve: Resolver) -> None:
        self.fetcher = fetcher
        self.resolve = resolve
        self.urls: dict[Key, ImageSource] = {}  # URLs of queued uploads, while they are fresh
        self._asking = asyncio.Lock()  # a channel's first 403 spares the rest of the batch

    def forget(self, keys: set[Key]) -> None:
        """URLs of uploads no longer queued (deleted, forgotten or opted out before they were
        indexed): the rows went, the URLs would stay for good."""
        for key in keys:
            self.urls.pop(key, None)

    def fetch(self, refs: list[ImageRef], *, decode: bool) -> Batch:
        """Starts fetching `refs`; with `decode` False, decoding waits for `Batch.decode`."""
        ready = asyncio.Event()
        if decode:
            ready.set()
        return Batch(refs, ready, asyncio.create_task(self._fetch_all(refs, ready)))

    async def _fetch_all(self, refs: list[ImageRef], decode: asyncio.Event) -> list[Outcome]:
        slots = asyncio.Semaphore(FETCHES_AT_ONCE)
        async with asyncio.TaskGroup() as group:
            tries = [group.create_task(self._try_fetch(ref, slots, decode)) for ref in refs]
        return [done.result() for done in tries]

    async def _try_fetch(
        self, ref: ImageRef, slots: asyncio.Semaphore, decode: asyncio.Event
    ) -> Outcome:
        """The decoded image, or why it is not indexed now; any other failure is the batch's."""
        async with slots:  # held until decoded: a download waiting for `decode` counts
            try:
                return await self._fetch(ref, decode)
            except (Unavailable, ImageError, Gone) as exc:
                return exc

    async def _fetch(self, ref: ImageRef, decode: asyncio.Event) -> Decoded:
        """Raises Unavailable (try later), Gone, or ImageError (refused)."""
        source = self.urls.get(ref.key)
        if source is not None:
            try:
                return await self._download(source, decode)
            except Gone:
                self.urls.pop(ref.key, None)  # the URL may have expired: ask Discord again
        async with self._asking:  # one question to Discord at a time, as the catch-up asks
            source = await self.resolve(ref)
        if source is None:
            raise Gone("its message or attachment is gone")
        self.urls[ref.key] = source
        return await self._download(source, decode)

    async def _download(self, source: ImageSource, decode: asyncio.Event) -> Decoded:
        try:
            return await self.fetcher.fetch(source, decode=decode)
        except DownloadError as exc:
            raise (Unavailable(str(exc)) if exc.transient else Gone(str(exc))) from None
