"""The fetcher's short-lived cache of recent results lets go of them in time: on a quiet server
no later fetch comes to expire them, and each holds a decoded picture (a real loader, an image
served on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.images.decode import ImageLimits
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import ImageLoader
from bot.index.refs import ImageRef
from bot.workers import Workers
from tests.local_http import serving


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "PNG")
    return buffer.getvalue()


class Images:
    """Pictures served on 127.0.0.1 (any name), counted, and a fetcher of them."""

    def __init__(self, fetcher: MediaFetcher, port: int) -> None:
        self.fetcher, self.port, self.served = fetcher, port, 0

    def source(self, n: int) -> ImageSource:
        ref = ImageRef(1, 2, 3, 100 + n, 5, time.time())
        return ImageSource(ref, f"http://127.0.0.1:{self.port}/{n}.png", f"{n}.png", None)


Answer = Callable[[web.Request], Awaitable[web.Response]]


@contextlib.asynccontextmanager
async def served_images(answer: Answer | None = None) -> AsyncIterator[Images]:
    """`answer`: what the server says to each request (by default, a picture)."""
    images: list[Images] = []

    async def image(request: web.Request) -> web.Response:
        images[0].served += 1
        if answer is not None:
            return await answer(request)
        return web.Response(body=png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", image)
    workers = Workers()
    try:
        async with serving(app) as port, aiohttp.ClientSession() as session:
            fetcher = MediaFetcher(session, ImageLoader(workers, ImageLimits()), frozenset())
            images.append(Images(fetcher, port))
            yield images[0]
            await fetcher.close()
    finally:
        workers.shutdown()


async def test_a_recent_result_is_let_go_without_another_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.modules["bot.images.fetcher"], "CACHE_SECONDS", 0.3)
    async with served_images() as images:
        source = images.source(0)
        first = await images.fetcher.fetch(source)
        again = await images.fetcher.fetch(source)
        assert again is first and images.served == 1  # the cache at work
        picture = weakref.ref(first.image)
        del first, again
        await asyncio.sleep(0.5)
        gc.collect()
        assert picture() is None
        await images.fetcher.fetch(source)
        assert images.served == 2


async def test_no_more_pictures_are_held_than_the_cache_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of fetches (the indexer's backlog): those that left the cache for newer ones are
    let go at once, not kept until their time would have run out."""
    monkeypatch.setattr(sys.modules["bot.images.fetcher"], "CACHE_ENTRIES", 4)
    async with served_images() as images:
        pictures = []
        for n in range(12):
            decoded = await images.fetcher.fetch(images.source(n))
            pictures.append(weakref.ref(decoded.image))
        del decoded
        gc.collect()
        assert sum(p() is not None for p in pictures) <= 5  # the cache's 4, and the last


async def test_a_failure_nobody_waited_for_is_not_handed_to_the_next_caller() -> None:
    """The only caller gave up (cancelled) while the fetch ran on, shielded; the fetch then
    failed. A caller asking next fetches afresh rather than get that failure."""
    answers = [web.Response(status=404), web.Response(body=png(), content_type="image/png")]

    async def image(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)
        return answers.pop(0)

    async with served_images(image) as images:
        fetcher, source = images.fetcher, images.source(0)
        gave_up = asyncio.create_task(fetcher.fetch(source))
        await asyncio.sleep(0.05)
        gave_up.cancel()
        # Until the 404 reached the fetch, which failed with nobody awaiting it.
        await asyncio.gather(*fetcher._running, return_exceptions=True)
        decoded = await fetcher.fetch(source)
        assert decoded.image.size == (64, 48) and images.served == 2
