"""The background indexer's downloads: several in flight while a batch is fetched, fresh URLs
asked of Discord one at a time, and content indexed already never embedded again (a real
index, the tiny models, a CDN on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from bot.images import download as downloads
from bot.images.decode import ImageLimits
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import ImageLoader
from bot.index import background, uploads
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef
from bot.vision.service import VisionService
from tests.conftest import encode
from tests.local_http import serving

CHANNEL = 31
UPLOADS = 16
HOLD_AT_MOST_S = 1.0


class SlowCdn:
    """Holds each answer until FETCHES_AT_ONCE requests are in flight, or a second has passed
    (so that an indexer fetching one at a time is slow, not stuck); counts them."""

    def __init__(self) -> None:
        self.images = [
            encode(Image.new("RGB", (48, 48), (15 * n, 255 - 15 * n, 90)), "PNG")
            for n in range(UPLOADS)
        ]
        self.in_flight = 0
        self.most_in_flight = 0
        self.crowded = asyncio.Event()
        self.base = ""

    async def image(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= uploads.FETCHES_AT_ONCE:
            self.crowded.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.crowded.wait(), HOLD_AT_MOST_S)
            return web.Response(body=self.images[int(request.match_info["n"])])
        finally:
            self.in_flight -= 1

    def source(self, n: int) -> ImageSource:
        ref = ImageRef(1, CHANNEL, 1000 + n, 2000 + n, 7, time.time())
        return ImageSource(ref, f"{self.base}/{n}.png", f"{n}.png", len(self.images[n]))


@pytest.fixture
async def cdn() -> AsyncIterator[SlowCdn]:
    cdn = SlowCdn()
    app = web.Application()
    app.router.add_get("/{n}.png", cdn.image)
    async with serving(app) as port:
        cdn.base = f"http://127.0.0.1:{port}"
        yield cdn


Resolver = Callable[[ImageRef], Awaitable[ImageSource | None]]


async def index_all(
    service: VisionService, tmp_path: Path, sources: list[ImageSource], resolve: Resolver
) -> ImageIndex:
    """Queues `sources` as a previous run of the bot did (their URLs forgotten where `resolve`
    must give them), then lets a fresh indexer index them all."""
    index = await ImageIndex.open(
        tmp_path / "index.sqlite3", "tiny", service.workers, per_channel=100, retention_days=0
    )
    async with aiohttp.ClientSession() as session:
        fetcher = MediaFetcher(session, ImageLoader(service.workers, ImageLimits()), frozenset())
        indexer = Indexer(index, service, fetcher, resolve)
        await indexer.submit(sources)
        indexer.start()
        assert await indexer.wait_until_done([CHANNEL], limit_s=60)
        await indexer.stop()
    return index


async def test_a_batch_downloads_several_images_at_once(
    service: VisionService, tmp_path: Path, cdn: SlowCdn
) -> None:
    async def unused(ref: ImageRef) -> ImageSource | None:
        raise AssertionError("every URL was fresh")

    index = await index_all(service, tmp_path, [cdn.source(n) for n in range(UPLOADS)], unused)
    try:
        assert await index.count([CHANNEL]) == UPLOADS
        assert 1 < cdn.most_in_flight == uploads.FETCHES_AT_ONCE
    finally:
        await index.close()


async def test_fresh_urls_are_asked_of_discord_one_at_a_time(
    service: VisionService, tmp_path: Path, cdn: SlowCdn
) -> None:
    """After a restart no URL is known: each is asked again, in turn, so that a channel's first
    403 spares the rest of its batch; the downloads themselves still overlap."""
    asking = most_asking = 0
    asked: list[int] = []

    async def resolve(ref: ImageRef) -> ImageSource | None:
        nonlocal asking, most_asking
        asking += 1
        most_asking = max(most_asking, asking)
        await asyncio.sleep(0.01)
        asking -= 1
        asked.append(ref.message_id)
        return cdn.source(ref.message_id - 1000)

    stale = [
        ImageSource(cdn.source(n).ref, f"{cdn.base}/expired/{n}.png", f"{n}.png", None)
        for n in range(UPLOADS)
    ]
    index = await index_all(service, tmp_path, stale, resolve)
    try:
        assert await index.count([CHANNEL]) == UPLOADS
        assert sorted(asked) == [1000 + n for n in range(UPLOADS)]
        assert most_asking == 1
        assert cdn.most_in_flight > 1
    finally:
        await index.close()


async def test_an_image_indexed_already_is_not_embedded_again(
    service: VisionService, tmp_path: Path, cdn: SlowCdn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reposts of indexed images (new messages, the same bytes) are stored from the index's own
    embeddings, looked up by content; only new content reaches the model."""
    embedded: list[int] = []
    real = service.embed_images

    async def counted(images: Sequence[Image.Image], *, background: bool = False) -> np.ndarray:
        embedded.append(len(images))
        return await real(images, background=background)

    async def unused(ref: ImageRef) -> ImageSource | None:
        raise AssertionError("every URL was fresh")

    monkeypatch.setattr(service, "embed_images", counted)
    first = [cdn.source(n) for n in range(UPLOADS // 2)]
    await (await index_all(service, tmp_path, first, unused)).close()
    assert sum(embedded) == UPLOADS // 2
    reposts = [
        ImageSource(ImageRef(1, CHANNEL, 5000 + n, 1, 8, time.time()), source.url, "re.png", None)
        for n, source in enumerate(cdn.source(n) for n in range(UPLOADS))
    ]
    index = await index_all(service, tmp_path, reposts, unused)
    try:
        assert sum(embedded) == UPLOADS, "an indexed image was embedded again"
        assert await index.count([CHANNEL]) == UPLOADS // 2 + UPLOADS
        for n in range(UPLOADS // 2):
            (_, vector), *_ = (await index.of_message(1000 + n)).values()
            (_, again), *_ = (await index.of_message(5000 + n)).values()
            assert np.array_equal(vector, again)
    finally:
        await index.close()


async def test_urls_of_uploads_removed_before_indexing_are_not_kept(
    service: VisionService, tmp_path: Path, cdn: SlowCdn
) -> None:
    """Uploads deleted (or forgotten) while queued: their rows go, and so do their URLs."""
    index = await ImageIndex.open(
        tmp_path / "index.sqlite3", "tiny", service.workers, per_channel=100, retention_days=0
    )
    async with aiohttp.ClientSession() as session:
        fetcher = MediaFetcher(session, ImageLoader(service.workers, ImageLimits()), frozenset())
        indexer = Indexer(index, service, fetcher, lambda ref: asyncio.sleep(0, None))
        await indexer.submit([cdn.source(n) for n in range(4)])
        await index.remove_messages([1000, 1001])  # deleted before the indexer got to them
        indexer.start()
        try:
            assert await indexer.wait_until_done([CHANNEL], limit_s=60)
            assert await index.count([CHANNEL]) == 2
            assert indexer.uploads.urls == {}
        finally:
            await indexer.stop()
            await index.close()


class Hits:
    """How many times a link was asked for."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def hit(self) -> None:
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def reach(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.count >= count)


@contextlib.asynccontextmanager
async def a_dead_link_first(
    service: VisionService, tmp_path: Path
) -> AsyncIterator[tuple[Indexer, ImageIndex, list[ImageSource], Hits]]:
    """An indexer, not started, and UPLOADS + 1 sources: the first a link preview whose site
    is down (the media proxy answers 502 each time), then UPLOADS images; and the dead link's
    hits."""
    images = SlowCdn().images
    broken_hits = Hits()

    async def broken(request: web.Request) -> web.Response:
        await broken_hits.hit()
        return web.Response(status=502)

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=images[int(request.match_info["n"])])

    app = web.Application()
    app.router.add_get("/broken.png", broken)
    app.router.add_get("/{n}.png", image)
    async with serving(app) as port, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{port}"
        first = ImageRef(1, CHANNEL, 999, 1999, 7, time.time())
        sources = [ImageSource(first, f"{base}/broken.png", "broken.png", None)] + [
            ImageSource(ImageRef(1, CHANNEL, 1000 + n, 2000 + n, 7, time.time()), f"{base}/{n}.png",
                        f"{n}.png", None)
            for n in range(UPLOADS)
        ]  # fmt: skip
        index = await ImageIndex.open(
            tmp_path / "index.sqlite3", "tiny", service.workers, per_channel=100, retention_days=0
        )
        fetcher = MediaFetcher(session, ImageLoader(service.workers, ImageLimits()), frozenset())
        indexer = Indexer(index, service, fetcher, resolve=lambda ref: asyncio.sleep(0))
        try:
            yield indexer, index, sources, broken_hits
        finally:
            await indexer.stop()
            await index.close()


async def failed_alone(indexer: Indexer, dead: ImageSource, hits: Hits, tries: int) -> None:
    """The dead link queued alone and tried: its batch failed whole, and its wait has begun."""
    await indexer.submit([dead])
    indexer.start()
    await asyncio.wait_for(hits.reach(tries), 30)
    await asyncio.sleep(0.2)


async def test_an_image_that_keeps_failing_holds_back_no_other(
    service: VisionService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The oldest queued upload fails each time for now (a link preview whose site is down:
    the media proxy answers 502). The queue is taken oldest first, so it was in every batch, and
    each batch waited as in an outage. Now the others are indexed at once, and it stays queued,
    to be tried again later on its own."""
    monkeypatch.setattr(background, "RETRY_START_S", 60.0)  # an outage's wait would show
    async with a_dead_link_first(service, tmp_path) as (indexer, index, sources, broken_hits):
        await indexer.submit(sources)
        indexer.start()
        good = [source.ref.key for source in sources[1:]]
        assert await indexer.wait_for(good, limit_s=30)
        assert await index.count([CHANNEL]) == UPLOADS
        assert await index.pending_count([CHANNEL]) == 1
        assert broken_hits.count == 1 + len(downloads.RETRY_PAUSES_S)  # one try, not one a batch


async def test_uploads_that_come_while_a_lone_failing_one_waits_are_tried_at_once(
    service: VisionService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dead link was all that was queued: its batch failed whole, which reads as an
    outage. The uploads that come meanwhile are not held back by its wait (a minute here, up
    to five in all); with them it fails alone, and waits on its own."""
    monkeypatch.setattr(background, "RETRY_START_S", 60.0)
    tries = 1 + len(downloads.RETRY_PAUSES_S)
    async with a_dead_link_first(service, tmp_path) as (indexer, index, sources, broken_hits):
        await failed_alone(indexer, sources[0], broken_hits, tries)
        await indexer.submit(sources[1:])
        good = [source.ref.key for source in sources[1:]]
        assert await indexer.wait_for(good, limit_s=30)
        assert await index.count([CHANNEL]) == UPLOADS
        assert await index.pending_count([CHANNEL]) == 1
        assert broken_hits.count == 2 * tries


async def test_a_search_does_not_wait_for_uploads_that_fail_for_now(
    service: VisionService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`!find` waits up to 5 s for what is queued in its channels, so that an image posted a
    moment ago is found; not for a dead link, which is tried again in a minute at the soonest,
    alone (its batch waits as in an outage) or beside others (it waits on its own)."""
    monkeypatch.setattr(background, "RETRY_START_S", 60.0)
    tries = 1 + len(downloads.RETRY_PAUSES_S)
    async with a_dead_link_first(service, tmp_path) as (indexer, index, sources, broken_hits):
        await failed_alone(indexer, sources[0], broken_hits, tries)
        started = time.monotonic()
        assert await indexer.wait_until_done([CHANNEL], limit_s=5)
        assert time.monotonic() - started < 1.0
        await indexer.submit(sources[1:])  # fresh uploads are waited for
        assert await indexer.wait_until_done([CHANNEL], limit_s=30)
        assert await index.count([CHANNEL]) == UPLOADS
        await asyncio.wait_for(broken_hits.reach(2 * tries), 30)  # failed again, now deferred
        await asyncio.sleep(0.2)
        started = time.monotonic()
        assert await indexer.wait_until_done([CHANNEL], limit_s=5)
        assert time.monotonic() - started < 1.0
        assert await index.pending_count([CHANNEL]) == 1  # still queued, for later
