"""The fetcher's short-lived cache of recent results lets go of them in time: on a quiet server
no later fetch comes to expire them, and each holds a decoded picture (a real loader, an image
served on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import time
import weakref

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


async def test_a_recent_result_is_let_go_without_another_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.modules["bot.images.fetcher"], "CACHE_SECONDS", 0.3)
    served = 0

    async def image(_request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(body=png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/a.png", image)
    workers = Workers()
    try:
        async with serving(app) as port, aiohttp.ClientSession() as session:
            fetcher = MediaFetcher(session, ImageLoader(workers, ImageLimits()), frozenset())
            ref = ImageRef(1, 2, 3, 4, 5, time.time())
            source = ImageSource(ref, f"http://127.0.0.1:{port}/a.png", "a.png", None)
            first = await fetcher.fetch(source)
            again = await fetcher.fetch(source)
            assert again is first and served == 1  # the cache at work
            picture = weakref.ref(first.image)
            del first, again
            await asyncio.sleep(0.5)
            gc.collect()
            assert picture() is None
            await fetcher.fetch(source)
            assert served == 2
            await fetcher.close()
    finally:
        workers.shutdown()


async def test_no_more_pictures_are_held_than_the_cache_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of fetches (the indexer's backlog): those that left the cache for newer ones are
    let go at once, not kept until their time would have run out."""
    monkeypatch.setattr(sys.modules["bot.images.fetcher"], "CACHE_ENTRIES", 4)

    async def image(_request: web.Request) -> web.Response:
        return web.Response(body=png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", image)
    workers = Workers()
    try:
        async with serving(app) as port, aiohttp.ClientSession() as session:
            fetcher = MediaFetcher(session, ImageLoader(workers, ImageLimits()), frozenset())
            pictures = []
            for n in range(12):
                ref = ImageRef(1, 2, 3, 100 + n, 5, time.time())
                source = ImageSource(ref, f"http://127.0.0.1:{port}/{n}.png", f"{n}.png", None)
                pictures.append(weakref.ref((await fetcher.fetch(source)).image))
            gc.collect()
            assert sum(p() is not None for p in pictures) <= 5  # the cache's 4, and the last
            await fetcher.close()
    finally:
        workers.shutdown()
