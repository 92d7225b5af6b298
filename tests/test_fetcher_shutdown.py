"""Stopping while the background indexer's downloads are still in flight: the fetcher cancels
them before the session closes, and none is left to fail unheard (a real index, the tiny
models, a CDN on 127.0.0.1 that holds its answers until told)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.images.decode import ImageLimits
from bot.images.download import DOWNLOAD_TIMEOUT
from bot.images.fetcher import CACHE_ENTRIES, ImageSource, MediaFetcher
from bot.images.loader import ImageLoader
from bot.index import uploads
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef
from bot.vision.service import VisionService
from bot.workers import Workers
from tests.local_http import serving

CHANNEL = 41
UPLOADS = 12


class HeldCdn:
    """Answers nothing until `release` is set, then a 500; counts requests in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.release = asyncio.Event()
        self.base = ""

    async def image(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        try:
            await self.release.wait()
            return web.Response(status=500)
        finally:
            self.in_flight -= 1

    def source(self, n: int) -> ImageSource:
        ref = ImageRef(1, CHANNEL, 1000 + n, 2000 + n, 7, time.time())
        return ImageSource(ref, f"{self.base}/{n}.png", f"{n}.png", 4096)

    async def until_in_flight(self, count: int) -> None:
        for _ in range(500):
            if self.in_flight >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{self.in_flight} requests in flight, {count} expected")


@pytest.fixture
async def cdn() -> AsyncIterator[HeldCdn]:
    cdn = HeldCdn()
    app = web.Application()
    app.router.add_get("/{n}.png", cdn.image)
    async with serving(app) as port:
        cdn.base = f"http://127.0.0.1:{port}"
        yield cdn
        cdn.release.set()


@pytest.fixture
async def lost() -> AsyncIterator[list[dict[str, Any]]]:
    """What asyncio reports to the loop's exception handler: a task's failure nobody awaited."""
    reports: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    yield reports
    loop.set_exception_handler(None)


def fetches() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "MediaFetcher._fetch" in repr(t.get_coro())]


async def unused(ref: ImageRef) -> ImageSource | None:
    raise AssertionError("every URL was fresh")


async def stopped_mid_batch(
    service: VisionService, tmp_path: Path, cdn: HeldCdn, *, fail_first: bool
) -> None:
    """Starts indexing, stops the indexer while FETCHES_AT_ONCE downloads are held, (with
    `fail_first`, lets them fail after their caller is gone), then closes as the bot does."""
    index = await ImageIndex.open(
        tmp_path / "index.sqlite3", "tiny", service.workers, per_channel=100, retention_days=0
    )
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = MediaFetcher(
                session, ImageLoader(service.workers, ImageLimits()), frozenset()
            )
            indexer = Indexer(index, service, fetcher, unused)
            await indexer.submit([cdn.source(n) for n in range(UPLOADS)])
            indexer.start()
            await cdn.until_in_flight(uploads.FETCHES_AT_ONCE)
            await indexer.stop()
            if fail_first:
                cdn.release.set()
                await asyncio.wait(fetches(), timeout=10)
            closing = time.monotonic()
            await fetcher.close()
            # Cancelled, not waited out: the CDN would hold them until their read timeout.
            assert time.monotonic() - closing < DOWNLOAD_TIMEOUT.sock_read / 5
            assert fetches() == []
        assert await index.pending_count() == UPLOADS  # nothing lost: indexed next time
    finally:
        await index.close()
    del fetcher, indexer
    gc.collect()
    await asyncio.sleep(0)


async def test_closing_cancels_the_downloads_a_stopped_indexer_left(
    service: VisionService, tmp_path: Path, cdn: HeldCdn, lost: list[dict[str, Any]]
) -> None:
    await stopped_mid_batch(service, tmp_path, cdn, fail_first=False)
    assert lost == []


async def test_a_download_failing_after_its_caller_gave_up_is_not_reported_lost(
    service: VisionService, tmp_path: Path, cdn: HeldCdn, lost: list[dict[str, Any]]
) -> None:
    await stopped_mid_batch(service, tmp_path, cdn, fail_first=True)
    assert lost == []


async def test_closing_cancels_fetches_the_cache_no_longer_holds(
    cdn: HeldCdn, lost: list[dict[str, Any]]
) -> None:
    """More uploads in flight than the cache keeps (a burst of commands beside the indexer):
    the oldest leave the cache while still downloading, and closing cancels them too."""
    count = CACHE_ENTRIES + 4
    workers = Workers()
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = MediaFetcher(session, ImageLoader(workers, ImageLimits()), frozenset())
            callers = [asyncio.ensure_future(fetcher.fetch(cdn.source(n))) for n in range(count)]
            await cdn.until_in_flight(count)
            for caller in callers:
                caller.cancel()
            await asyncio.gather(*callers, return_exceptions=True)
            assert len(fetches()) == count  # their callers gone, the downloads run on
            closing = time.monotonic()
            await fetcher.close()
            assert time.monotonic() - closing < DOWNLOAD_TIMEOUT.sock_read / 5
            assert fetches() == []
    finally:
        workers.shutdown()
    assert lost == []
