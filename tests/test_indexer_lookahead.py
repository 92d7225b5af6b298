"""The background indexer fetches its next batch while the current one is embedded. On a CPU
the next batch's downloads go ahead and its decoding waits for the model, which it would slow,
with never more than FETCHES_AT_ONCE files held undecoded; where the model runs elsewhere it
decodes ahead too. Stopping meanwhile loses nothing and downloads nothing twice. A real index,
the tiny models, a CDN on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from bot.images.decode import ImageLimits
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import Decoded, ImageLoader
from bot.index import background
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef
from bot.index.uploads import FETCHES_AT_ONCE
from bot.vision.checkpoints import ModelLoadError
from bot.vision.service import OutOfMemory, VisionService
from bot.workers import Workers
from tests.conftest import encode
from tests.e2e.harness import eventually
from tests.local_http import serving

CHANNEL = 41
BATCH = 16
UPLOADS = 2 * BATCH


class Cdn:
    """Serves the uploads at once and records which were asked for."""

    def __init__(self) -> None:
        self.images = [
            encode(Image.new("RGB", (48, 48), (7 * n, 255 - 7 * n, 60)), "PNG")
            for n in range(UPLOADS)
        ]
        self.served: list[int] = []
        self.base = ""

    async def image(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        self.served.append(n)
        return web.Response(body=self.images[n])

    def source(self, n: int) -> ImageSource:
        ref = ImageRef(1, CHANNEL, 1000 + n, 2000 + n, 7, time.time())
        return ImageSource(ref, f"{self.base}/{n}.png", f"{n}.png", len(self.images[n]))

    def of_next_batch(self, ns: Sequence[int]) -> list[int]:
        return [n for n in ns if n >= BATCH]


class CountingLoader(ImageLoader):
    """The real loader, noting which upload each decode was."""

    def __init__(self, workers: Workers, images: list[bytes]) -> None:
        super().__init__(workers, ImageLimits())
        self._upload = {data: n for n, data in enumerate(images)}
        self.decoded: list[int] = []

    async def decode(self, data: bytes) -> Decoded:
        self.decoded.append(self._upload[data])
        return await super().decode(data)


@dataclass
class World:
    cdn: Cdn
    loader: CountingLoader
    fetcher: MediaFetcher
    index: ImageIndex
    embedding: asyncio.Event  # set once the first batch is being embedded
    release: asyncio.Event  # until set, that embedding waits

    async def downloaded_ahead(self) -> bool:
        """As many of the next batch downloaded as may be at once."""
        return len(self.cdn.of_next_batch(self.cdn.served)) >= FETCHES_AT_ONCE

    async def decoded_ahead(self) -> bool:
        """All of the next batch decoded."""
        return len(self.cdn.of_next_batch(self.loader.decoded)) == BATCH


@pytest.fixture
async def world(
    service: VisionService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    cdn = Cdn()
    app = web.Application()
    app.router.add_get("/{n}.png", cdn.image)
    embedding, release = asyncio.Event(), asyncio.Event()
    real = service.embed_images

    async def held(images: Sequence[Image.Image], *, background: bool = False) -> np.ndarray:
        embedding.set()
        await release.wait()
        return await real(images, background=background)

    monkeypatch.setattr(service, "embed_images", held)
    index = await ImageIndex.open(
        tmp_path / "index.sqlite3", "tiny", service.workers, per_channel=100, retention_days=0
    )
    async with serving(app) as port, aiohttp.ClientSession() as session:
        cdn.base = f"http://127.0.0.1:{port}"
        loader = CountingLoader(service.workers, cdn.images)
        fetcher = MediaFetcher(session, loader, frozenset())
        yield World(cdn, loader, fetcher, index, embedding, release)
        await fetcher.close()
    await index.close()


async def resolve_unused(ref: ImageRef) -> ImageSource | None:
    raise AssertionError("every URL was fresh")


async def started(world: World, service: VisionService, **options: bool) -> Indexer:
    indexer = Indexer(world.index, service, world.fetcher, resolve_unused, **options)
    await indexer.submit(world.cdn.source(n) for n in range(UPLOADS))
    indexer.start()
    await asyncio.wait_for(world.embedding.wait(), 30)
    return indexer


async def finished(world: World, indexer: Indexer) -> None:
    world.release.set()
    assert await indexer.wait_until_done([CHANNEL], limit_s=60)
    await indexer.stop()
    assert await world.index.count([CHANNEL]) == UPLOADS
    assert sorted(world.cdn.served) == list(range(UPLOADS)), "an upload was downloaded twice"


async def test_on_a_cpu_the_next_batch_downloads_while_one_is_embedded_and_decodes_after(
    service: VisionService, world: World
) -> None:
    indexer = await started(world, service)
    await eventually(world.downloaded_ahead)
    await asyncio.sleep(0.3)  # time to go further, were anything to let it
    assert len(world.cdn.of_next_batch(world.cdn.served)) == FETCHES_AT_ONCE
    assert world.cdn.of_next_batch(world.loader.decoded) == []
    await finished(world, indexer)
    assert sorted(world.loader.decoded) == list(range(UPLOADS))


async def test_where_the_model_needs_no_cores_the_next_batch_decodes_ahead_too(
    service: VisionService, world: World
) -> None:
    indexer = await started(world, service, decode_ahead=True)
    await eventually(world.decoded_ahead)
    await finished(world, indexer)


async def test_stopping_with_a_batch_fetched_ahead_loses_nothing_and_downloads_nothing_twice(
    service: VisionService, world: World
) -> None:
    first = await started(world, service)
    await eventually(world.downloaded_ahead)
    await first.stop()
    world.release.set()

    async def resolve(ref: ImageRef) -> ImageSource | None:  # a restart forgot the URLs
        return world.cdn.source(ref.message_id - 1000)

    second = Indexer(world.index, service, world.fetcher, resolve)
    second.start()
    await finished(world, second)


@pytest.mark.parametrize("trouble", ["load", "memory"])
async def test_the_search_model_failing_for_now_drops_no_image(
    service: VisionService, world: World, monkeypatch: pytest.MonkeyPatch, trouble: str
) -> None:
    """A reload that fails (the GPU busy, the cache unreadable) or a GPU out of memory is the
    model's trouble, not the images': their batch waits and is tried again, however often,
    where an image's own failure counts towards dropping it after 3."""
    monkeypatch.setattr(background, "RETRY_START_S", 0.01)
    world.release.set()
    real, failures = service.embed_images, 0

    async def failing(images: Sequence[Image.Image], *, background: bool = False) -> np.ndarray:
        nonlocal failures
        if failures < 8:  # (its batches take turns: each fails 4 times)
            failures += 1
            raise (
                ModelLoadError("SEARCH_MODEL: cannot load 'x'")
                if trouble == "load"
                else OutOfMemory()
            )
        return await real(images, background=background)

    monkeypatch.setattr(service, "embed_images", failing)
    indexer = Indexer(world.index, service, world.fetcher, resolve_unused)
    await indexer.submit(world.cdn.source(n) for n in range(UPLOADS))
    indexer.start()
    await finished(world, indexer)
    assert failures == 8
