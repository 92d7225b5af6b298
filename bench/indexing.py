"""Indexing as the bot does it: its own background indexer, fed uploads it must fetch.

Each upload is served over HTTP from 127.0.0.1 and goes through the indexer's real path: the
media fetcher downloads it, the image loader decodes it (JPEG draft mode) and hashes it on the
prep threads, the indexer embeds its batches at background priority, and the embeddings are
written to a SQLite index. The seed's path gets the bytes without a download, so the figure
errs in the seed's favour. How busy the model thread and the decoding threads were meanwhile
says which bound the run (bench/lanes.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.lanes import TimedWorkers
from bot.images.decode import ImageLimits
from bot.images.fetcher import ImageSource, MediaFetcher
from bot.images.loader import ImageLoader
from bot.index.background import Indexer
from bot.index.image_index import ImageIndex
from bot.index.refs import ImageRef
from bot.vision.service import VisionService

CHANNEL = 4242


@dataclass(frozen=True)
class Indexed:
    s_per_image: float
    model_busy: float  # the share of the run the model thread was busy
    prep_busy: float  # how many decoding threads were busy, on average


async def serve(jpegs: list[bytes]) -> tuple[web.AppRunner, str]:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=jpegs[int(request.match_info["n"])], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/photos/{n}.jpg", image)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/photos"


async def index_seconds(vision: VisionService, jpegs: list[bytes], folder: Path) -> Indexed:
    """Seconds per photo from queuing `jpegs` as uploads until all are searchable."""
    lanes = vision.workers
    if not isinstance(lanes, TimedWorkers):
        raise TypeError("the service's workers must be bench.lanes.TimedWorkers")
    runner, base = await serve(jpegs)
    index = await ImageIndex.open(
        folder / "index.sqlite3",
        f"bench-{len(jpegs)}",
        vision.workers,
        per_channel=len(jpegs) + 1,
        retention_days=0,
    )
    try:
        async with aiohttp.ClientSession() as session:
            loader = ImageLoader(vision.workers, ImageLimits())
            fetcher = MediaFetcher(session, loader, frozenset())
            sources = {}
            for n, data in enumerate(jpegs):
                ref = ImageRef(1, CHANNEL, 10_000 + n, 1, 7, time.time())
                sources[ref.key] = ImageSource(ref, f"{base}/{n}.jpg", f"{n}.jpg", len(data))

            async def resolve(ref: ImageRef) -> ImageSource | None:
                return sources.get(ref.key)

            indexer = Indexer(index, vision, fetcher, resolve)
            busy = dict(lanes.busy_s)
            started = time.perf_counter()
            await indexer.submit(sources.values())
            indexer.start()
            done = await indexer.wait_until_done([CHANNEL], limit_s=3600)
            elapsed = time.perf_counter() - started
            model_busy, prep_busy = (lanes.busy_s[lane] - busy[lane] for lane in ("model", "prep"))
            await indexer.stop()
        if not done or await index.count([CHANNEL]) != len(jpegs):
            raise RuntimeError("the indexer did not index every photo")
        return Indexed(elapsed / len(jpegs), model_busy / elapsed, prep_busy / elapsed)
    finally:
        await index.close()
        await runner.cleanup()
