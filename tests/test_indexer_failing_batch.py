"""Sixteen queued uploads that keep failing for now (previews of a site that is down, read by a
catch-up: Discord's media proxy answers 503) make a whole batch fail, which reads as an
outage; taken oldest first, they were all the indexer ever tried again, and nothing queued
after them was indexed. A real index, the tiny models, a CDN on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.images import download
from bot.images.decode import ImageLimits
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import ImageLoader
from bot.index import background
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef
from bot.vision.service import VisionService
from tests.conftest import encode
from tests.local_http import serving

CHANNEL = 43
UP = 4


@pytest.mark.parametrize("down", [16, 48], ids=["a-batch", "three-batches"])
async def test_a_batch_that_keeps_failing_lets_the_rest_of_the_queue_through(
    service: VisionService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, down: int
) -> None:
    """`down` uploads in a row keep failing: a whole batch of them, or a run of them that
    must be walked past quickly (one per outage's wait, doubling, took hours)."""
    monkeypatch.setattr(background, "RETRY_START_S", 0.05)
    monkeypatch.setattr(download, "RETRY_PAUSES_S", (0.01, 0.01))
    picture = encode(Image.new("RGB", (48, 48), (200, 40, 90)), "PNG")

    async def image(request: web.Request) -> web.Response:
        if int(request.match_info["n"]) < down:
            return web.Response(status=503)
        return web.Response(body=picture)

    app = web.Application()
    app.router.add_get("/{n}.png", image)
    index = await ImageIndex.open(
        tmp_path / "index.sqlite3", "tiny", service.workers, per_channel=100, retention_days=0
    )
    async with serving(app) as port, aiohttp.ClientSession() as session:
        fetcher = MediaFetcher(session, ImageLoader(service.workers, ImageLimits()), frozenset())

        def source(n: int) -> ImageSource:
            ref = ImageRef(1, CHANNEL, 1000 + n, 2000 + n, 7, time.time())
            return ImageSource(ref, f"http://127.0.0.1:{port}/{n}.png", f"{n}.png", None)

        async def unused(ref: ImageRef) -> ImageSource | None:
            raise AssertionError("every URL was fresh")

        indexer = Indexer(index, service, fetcher, unused)
        await indexer.submit(source(n) for n in range(down + UP))
        indexer.start()
        try:
            # The uploads that come through are indexed; the failing ones wait on their own.
            assert await indexer.wait_until_done([CHANNEL], limit_s=60)
            assert await index.count([CHANNEL]) == UP
            assert await index.pending_count([CHANNEL]) == down
        finally:
            await indexer.stop()
            await fetcher.close()
    await index.close()
