"""A batch may start from an earlier batch's cache (bot/vision/captions.py keeps it while the model
is loaded): stale keys and values there change no caption, the service allocates a cache once
for a stream of captions and once more for a bigger burst, which it keeps (also when every
caller in a batch gave up), and it keeps nothing of unloaded models."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch

from bot.vision.blip import Captioner, CaptionInputs
from bot.vision.captions import CaptionStream
from bot.vision.decoder import Slots, TextDecoder
from bot.vision.running import RunningBatch
from bot.vision.service import VisionService
from bot.workers import Workers
from tests.conftest import TINY_BLIP, tiny_settings
from tests.shapes import draw_shape
from tests.test_decoding import CPU, alone, decode_staggered, requests_for

GREEN_CIRCLE = draw_shape(random.Random(4), "green", "circle", 96)


def test_a_cache_full_of_stale_values_changes_no_caption() -> None:
    tiny = Captioner.load(str(TINY_BLIP), CPU, torch.float32, 30)
    decoder = tiny.decoder
    spare = decoder.empty_slots(16, decoder.places.shape[0], tiny.image_tokens)
    torch.manual_seed(0)
    spare.self_kv.normal_(0, 3)
    spare.cross_kv.normal_(0, 3)
    batch = RunningBatch(decoder, tiny.stop_token, spare=spare)
    requests = requests_for(24, seed=12)
    finished, joins = decode_staggered(tiny, batch, requests, seed=13)
    assert joins >= 3
    assert batch.slots is spare
    for ticket, (image, prompt) in enumerate(requests):
        assert finished[ticket] == alone(tiny, image, prompt), ticket


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The caches allocated from here on: `empty_slots` arguments, one entry per cache."""
    allocations: list[tuple[int, ...]] = []
    empty_slots = TextDecoder.empty_slots

    def counted(self: TextDecoder, *args: int) -> Slots:
        allocations.append(args)
        return empty_slots(self, *args)

    monkeypatch.setattr(TextDecoder, "empty_slots", counted)
    return allocations


async def test_a_stream_of_captions_allocates_its_cache_once_and_keeps_it(
    made: list[tuple[int, ...]],
) -> None:
    async def quiet_captions() -> None:
        for _ in range(3):
            assert await vision.caption(GREEN_CIRCLE) == "a green circle"
            await asyncio.sleep(0.2)  # the batch empties between them

    vision = VisionService(tiny_settings(), Workers())
    await vision.start()
    await vision.captioner()
    made.clear()  # the load's warm-up steps ran on a throwaway cache of their own
    try:
        await quiet_captions()
        assert len(made) == 1
        burst = await asyncio.gather(*(vision.caption(GREEN_CIRCLE) for _ in range(4)))
        assert burst == ["a green circle"] * 4
        assert len(made) == 2  # a burst too big for it: a bigger one, which is kept
        await quiet_captions()
        assert len(made) == 2
    finally:
        await vision.close()
        vision.workers.shutdown()


Request = Callable[[int], tuple[int, asyncio.Future[CaptionInputs]]]


def stream_of(tiny: Captioner, capacity: int) -> tuple[CaptionStream, Request]:
    """A caption stream over `tiny` run in place, and a maker of its requests (a green circle)."""

    async def captioner() -> Captioner:
        return tiny

    async def predict(fn: Callable[[], object]) -> object:
        return fn()

    def request(ticket: int) -> tuple[int, asyncio.Future[CaptionInputs]]:
        future = asyncio.get_running_loop().create_future()
        future.set_result(tiny.preprocess(GREEN_CIRCLE))
        return ticket, future

    return CaptionStream(captioner, predict, capacity), request


async def test_a_batch_whose_callers_all_gave_up_leaves_its_cache_for_the_next(
    made: list[tuple[int, ...]],
) -> None:
    tiny = Captioner.load(str(TINY_BLIP), CPU, torch.float32, 30)
    made.clear()  # the load's warm-up steps ran on a throwaway cache of their own
    stream, request = stream_of(tiny, capacity=16)
    assert await stream.join([request(1), request(2)]) == []
    assert await stream.step() == []  # a caption is more than one token
    stream.leave([1, 2])
    assert not stream.busy
    assert await stream.join([request(3)]) == []
    ended = []
    while stream.busy:
        ended += await stream.step()
    assert ended == [(3, "a green circle")]
    assert len(made) == 1


async def test_a_caller_who_gave_up_leaves_before_newcomers_join(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler counts a leaving caller's place as free (bot/vision/scheduler.py
    `_advance`): had the newcomer joined beside it, a batch of 2 would hold 3 captions, and on a
    GPU the fixed cache of 2 would refuse the newcomer."""
    sizes: list[int] = []
    join = RunningBatch.join

    def counted(batch: RunningBatch, *args: Any) -> None:
        join(batch, *args)
        sizes.append(len(batch))

    monkeypatch.setattr(RunningBatch, "join", counted)
    stream, request = stream_of(Captioner.load(str(TINY_BLIP), CPU, torch.float32, 30), 2)
    assert await stream.join([request(1), request(2)]) == []
    assert await stream.step() == []
    stream.leave([1])
    assert await stream.join([request(3)]) == []
    ended = []
    while stream.busy:
        ended += await stream.step()
    assert sorted(ended) == [(2, "a green circle"), (3, "a green circle")]
    assert sizes == [2, 2]


async def test_unloaded_models_are_not_kept_alive_by_a_kept_cache() -> None:
    vision = VisionService(tiny_settings(MODEL_IDLE_UNLOAD_S="0.3"), Workers())
    await vision.start()
    try:
        assert await vision.caption(GREEN_CIRCLE) == "a green circle"
        captioner = weakref.ref(await vision.captioner())
        for _ in range(60):
            if not vision.loaded:
                break
            await asyncio.sleep(0.05)
        assert not vision.loaded
        gc.collect()
        assert captioner() is None
    finally:
        await vision.close()
        vision.workers.shutdown()
