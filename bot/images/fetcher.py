"""Fetching a Discord image once for everyone who asks: captions and the index alike.

An upload that is captioned is usually indexed at the same moment; both ask here, and the
download and decode happen once (a short-lived cache of in-flight and recent results).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from dataclasses import dataclass

import aiohttp

from bot.images.download import download
from bot.images.errors import not_an_image, too_large
from bot.images.loader import Decoded, ImageLoader
from bot.images.signatures import declared_kind
from bot.index.refs import ImageRef, Key
from bot.tasks import retrieve

CACHE_ENTRIES = 32
CACHE_SECONDS = 120.0


@dataclass(frozen=True)
class ImageSource:
    """An image Discord told us about, and where Discord says it can be fetched."""

    ref: ImageRef
    url: str
    filename: str
    size: int | None  # known before download for attachments, unknown for embeds
    from_embed: bool = False
    spoiler: bool = False  # shown only behind Discord's spoiler cover
    alt_text: str | None = None  # what its poster wrote for it (the attachment's description)
    content_type: str | None = None  # an attachment's media type, as Discord gives it
    page: str | None = None  # the web page a link preview shows this picture for
    other_file: bool = False  # attached, but neither typed nor named as an image


class MediaFetcher:
    def __init__(
        self, session: aiohttp.ClientSession, loader: ImageLoader, allowed_hosts: frozenset[str]
    ) -> None:
        self.session = session
        self.loader = loader
        self.allowed_hosts = allowed_hosts
        # Each upload's fetch: when it began, the fetch, and the signal its decoding waits for.
        self._recent: OrderedDict[Key, tuple[float, asyncio.Task[Decoded], asyncio.Event]] = (
            OrderedDict()
        )
        # Every fetch until it ends, the cache's or not: one may outlive its cache entry (more
        # than CACHE_ENTRIES at once, or slower than CACHE_SECONDS) and must still be cancelled.
        self._running: set[asyncio.Task[Decoded]] = set()

    async def fetch(self, source: ImageSource, *, decode: asyncio.Event | None = None) -> Decoded:
        """Downloaded and decoded once per upload, however many callers ask at once.

        With `decode`, the download starts now and the decoding waits until it is set (the
        background indexer's next batch, while the model runs); a caller who asks for the same
        upload without one sets it, and so lets the rest of that batch decode too.

        Raises ImageError (refused) or DownloadError (could not fetch)."""
        key, now = source.ref.key, time.monotonic()
        self._expire(now)
        entry = self._recent.get(key)
        if decode is None:
            decode = asyncio.Event()
            decode.set()
        if entry is None:
            task = asyncio.ensure_future(self._fetch(source, decode))
            # A caller that gives up (cancelled) leaves the shielded fetch running; should it
            # then fail, nobody awaits it, and asyncio would log its traceback as lost.
            task.add_done_callback(retrieve)
            task.add_done_callback(self._running.discard)
            # A failure is not remembered, also when every caller gave up: the next fetches
            # again. (Run before any caller resumes: added before they await it.)
            task.add_done_callback(functools.partial(self._drop_failed, key))
            self._running.add(task)
            self._recent[key] = (now, task, decode)
            # Expired in time even if no other fetch comes: on a quiet server the last ones'
            # decoded pictures (megabytes each) would otherwise stay until the next. The timer
            # holds the key and start only, never the picture.
            asyncio.get_running_loop().call_later(CACHE_SECONDS, self._forget, key, now)
        else:
            task = entry[1]
            if decode.is_set():
                entry[2].set()
        return await asyncio.shield(task)

    async def _fetch(self, source: ImageSource, decode: asyncio.Event) -> Decoded:
        limit = self.loader.limits.max_bytes
        if (kind := declared_kind(source.content_type)) is not None:
            raise not_an_image(kind)  # (a member who attached a video hears so, at no cost)
        if source.size is not None and source.size > limit:
            raise too_large(source.size, limit)
        hosts = self.allowed_hosts if source.from_embed else None
        data = await download(self.session, source.url, limit, allowed_hosts=hosts)
        await decode.wait()
        return await self.loader.decode(data)

    def _drop_failed(self, key: Key, task: asyncio.Task[Decoded]) -> None:
        entry = self._recent.get(key)
        failed = task.cancelled() or task.exception() is not None
        if failed and entry is not None and entry[1] is task:
            del self._recent[key]

    def _forget(self, key: Key, started: float) -> None:
        entry = self._recent.get(key)
        if entry is not None and entry[0] == started:
            del self._recent[key]

    def _expire(self, now: float) -> None:
        while self._recent:
            key, (started, _, _) = next(iter(self._recent.items()))
            if len(self._recent) <= CACHE_ENTRIES and now - started < CACHE_SECONDS:
                break
            del self._recent[key]

    async def close(self) -> None:
        """Cancels the fetches still in flight, before the session they use is closed: those
        of callers that gave up (the background indexer, stopped mid-batch) run on."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._recent.clear()
