"""Fetching a Discord image and decoding it safely, for captions and for the index."""

from __future__ import annotations

import logging

import aiohttp
from PIL import Image

from bot.downloads import download
from bot.images import too_large
from bot.service import VisionService
from bot.sources import ImageSource

log = logging.getLogger(__name__)


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

    async def fetch_bytes(self, source: ImageSource) -> bytes:
        """Raises ImageError (refused) or DownloadError (could not fetch)."""
        limit = self.vision.limits.max_bytes
        if source.size is not None and source.size > limit:
            raise too_large(source.size, limit)
        hosts = self.allowed_hosts if source.from_embed else None
        return await download(self.session, source.url, limit, allowed_hosts=hosts)

    async def fetch_image(self, source: ImageSource) -> Image.Image:
        return await self.vision.load_image(await self.fetch_bytes(source))
