"""Caption workloads, the same for the seed's path and the service: a concurrent burst,
requests one at a time, and requests arriving at a steady pace.

The seed's path serves one caption at a time, in arrival order; the service batches what it
can. Both sides see the same images and the same arrival times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bot.vision.service import VisionService

LONE_REQUESTS = 8
STAGGERED_REQUESTS = 16
STAGGER_S = 0.1


@dataclass
class Staggered:
    """Requests arriving `STAGGER_S` apart: first arrival to last answer, and each latency."""

    makespan_s: float
    latencies_s: list[float]

    @property
    def p95_s(self) -> float:
        return float(np.percentile(self.latencies_s, 95))


async def concurrent(vision: VisionService, images: list[Image.Image]) -> tuple[float, list[float]]:
    """Seconds per caption with all `images` in flight at once, and the event loop's delays
    meanwhile (how late a 10 ms timer fires)."""
    delays: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            delays.append(max(0.0, time.perf_counter() - before - 0.01))

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(vision.caption(image) for image in images))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick
    return elapsed / len(images), delays


async def lone(vision: VisionService, images: list[Image.Image]) -> float:
    """Seconds per caption, each request answered before the next is sent."""
    started = time.perf_counter()
    for image in images:
        await vision.caption(image)
    return (time.perf_counter() - started) / len(images)


async def staggered(vision: VisionService, images: list[Image.Image]) -> Staggered:
    started = time.perf_counter()

    async def arrive(i: int, image: Image.Image) -> tuple[float, float]:
        await asyncio.sleep(max(0.0, started + i * STAGGER_S - time.perf_counter()))
        arrived = time.perf_counter()
        await vision.caption(image)
        return arrived, time.perf_counter()

    spans = await asyncio.gather(*(arrive(i, image) for i, image in enumerate(images)))
    return Staggered(
        max(end for _, end in spans) - started, [end - arrived for arrived, end in spans]
    )


def seed_staggered(caption: Callable[[Image.Image], object], images: list[Image.Image]) -> float:
    """The seed's path on the same schedule: one caption at a time, in arrival order, each
    started when it has arrived and the previous one is done. First arrival to last answer."""
    started = time.perf_counter()
    for i, image in enumerate(images):
        time.sleep(max(0.0, started + i * STAGGER_S - time.perf_counter()))
        caption(image)
    return time.perf_counter() - started


def seed_staggered_from(durations: list[float], count: int) -> float:
    """The same schedule computed from measured one-at-a-time captions (`--quick`): the seed
    serves one at a time, so its makespan follows from the durations alone."""
    finish = 0.0
    for i in range(count):
        finish = max(finish, i * STAGGER_S) + durations[i % len(durations)]
    return finish
