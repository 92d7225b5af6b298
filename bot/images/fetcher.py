"""Fetching a Discord image and decoding it safely, for captions and for the index.

An upload that is captioned is usually indexed at the same moment; both ask here, and the
download and decode happen once (a short-lived cache of in-flight and recent results).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import aiohttp
from PIL import Image

from bot.chat.sources import ImageSource
from bot.images.decode import too_large
from bot.images.download import download
from bot.vision.service import VisionService

log = logging.getLogger(__name__)

CACHE_ENTRIES = 32
CACHE_SECONDS = 120.0


@dataclass(frozen=True)
class Fetched:
    digest: str  # sha256 of the bytes, to embed identical images once
    image: Image.Image


class MediaFetcher:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        vision: VisionService,
        allowed_hosts: frozenset[str],
    ) -> None:
        self.session = session
        self.vision = vision
        self.allowed_hosts = allowed_hosts
        self._recent: OrderedDict[tuple[int, int], tuple[float, asyncio.Task[Fetched]]] = (
            OrderedDict()
        )

    async def fetch_bytes(self, source: ImageSource) -> bytes:
        """Raises ImageError (refused) or DownloadError (could not fetch)."""
        limit = self.vision.limits.max_bytes
        if source.size is not None and source.size > limit:
            raise too_large(source.size, limit)
        hosts = self.allowed_hosts if source.from_embed else None
        return await download(self.session, source.url, limit, allowed_hosts=hosts)

    async def fetch(self, source: ImageSource) -> Fetched:
        """Downloaded and decoded once per upload, however many callers ask at once."""
        key, now = source.ref.key, time.monotonic()
        self._expire(now)
        entry = self._recent.get(key)
        if entry is None:
            task = asyncio.ensure_future(self._fetch(source))
            self._recent[key] = (now, task)
        else:
            task = entry[1]
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._recent.get(key, (0, None))[1] is task:
                del self._recent[key]  # a failure is not remembered: the next try fetches again
            raise

    async def fetch_image(self, source: ImageSource) -> Image.Image:
        return (await self.fetch(source)).image

    async def _fetch(self, source: ImageSource) -> Fetched:
        data = await self.fetch_bytes(source)
        digest = hashlib.sha256(data).hexdigest()
        return Fetched(digest, await self.vision.load_image(data))

    def _expire(self, now: float) -> None:
        while self._recent:
            key, (started, task) = next(iter(self._recent.items()))
            if len(self._recent) <= CACHE_ENTRIES and now - started < CACHE_SECONDS:
                break
            del self._recent[key]
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so an unused failure is not reported as lost
