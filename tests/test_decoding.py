"""The running decode: captions that join and leave a shared batch between steps, with
different prompts, equal BLIP's `generate()` on each image alone, at float32.

On a machine with CUDA the tiny-model tests run there too: its running batch takes the
fixed-shape steps replayed as CUDA graphs (bot/vision/graphed.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.photos import photo
from bot.vision.blip import Captioner
from bot.vision.graphed import FixedSteps, fixed_length
from bot.vision.running import RunningBatch
from bot.vision.service import VisionService
from bot.workers import Workers
from tests.conftest import TINY_BLIP, tiny_settings
from tests.shapes import random_sample

CPU = torch.device("cpu")
DEVICES = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
PROMPTS = [None, "a", "a red", None, "a blue circle", "a green", "parrots on a", "a yellow"]


@pytest.fixture(scope="module", params=DEVICES, ids=str)
def tiny(request: pytest.FixtureRequest) -> Iterator[Captioner]:
    captioner = Captioner.load(str(TINY_BLIP), request.param, torch.float32, 30)
    yield captioner


def images(count: int, seed: int) -> list[Image.Image]:
    """Shapes the tiny model knows, and photos it does not (longer, odder captions)."""
    rng = random.Random(seed)
    return [
        random_sample(rng, rng.randint(48, 300))[0] if i % 2 else photo(160, 120, seed + i)
        for i in range(count)
    ]


def alone(captioner: Captioner, image: Image.Image, prompt: str | None) -> list[int]:
    """The seed's path: the checkpoint's processor, then `generate()` on this image alone."""
    processor = captioner.processor
    if prompt:
        inputs = processor(images=image, text=prompt, return_tensors="pt")
        prompt_length = inputs["input_ids"].shape[1] - 1
    else:
        inputs, prompt_length = processor(images=image, return_tensors="pt"), 1
    inputs = inputs.to(captioner.device)
    new_tokens = max(1, min(captioner.max_tokens, captioner.max_positions - prompt_length))
    with torch.inference_mode():
        out = captioner.model.generate(**inputs, max_new_tokens=new_tokens)
    return [int(t) for t in out[0]]


def decode_staggered(
    captioner: Captioner,
    batch: RunningBatch,
    requests: list[tuple[Image.Image, str | None]],
    seed: int,
    *,
    leave: frozenset[int] = frozenset(),
) -> tuple[dict[int, list[int]], int]:
    """Newcomers join between random steps, one to three at a time; `leave` tickets are
    dropped after a few steps. Returns each finished sequence's tokens, and how many joins
    happened while other sequences were mid-decode."""
    rng = random.Random(seed)
    queue = list(enumerate(requests))
    finished: dict[int, list[int]] = {}
    mid_decode_joins = steps = 0
    while queue or len(batch):
        if queue and (not len(batch) or rng.random() < 0.35):
            count = rng.randint(1, 3)
            if batch.fixed is not None:
                count = min(count, batch.fixed.slots.capacity - len(batch))
            newcomers, queue = queue[:count], queue[count:]
            mid_decode_joins += bool(len(batch)) and bool(newcomers)
            captioner.join(
                batch, [(t, captioner.preprocess(image, p)) for t, (image, p) in newcomers]
            )
        steps += 1
        if steps % 7 == 0:
            batch.remove(t for t in leave if t not in finished)
        finished.update((s.ticket, s.tokens) for s in batch.step())
    return finished, mid_decode_joins


def requests_for(count: int, seed: int) -> list[tuple[Image.Image, str | None]]:
    return [(image, PROMPTS[i % len(PROMPTS)]) for i, image in enumerate(images(count, seed))]


def test_captions_joining_mid_decode_equal_generate_alone(tiny: Captioner) -> None:
    requests = requests_for(40, seed=1)
    finished, joins = decode_staggered(tiny, tiny.running_batch(16), requests, seed=2)
    assert joins >= 5, "too few sequences joined a running decode to test it"
    for ticket, (image, prompt) in enumerate(requests):
        assert finished[ticket] == alone(tiny, image, prompt), (ticket, prompt)
    texts = tiny.postprocess([finished[t] for t in range(len(requests))])
    assert len(set(texts)) >= 10  # a real spread of captions, not one answer everywhere


def test_fixed_shape_steps_equal_generate_alone(tiny: Captioner) -> None:
    """The steps a GPU replays as CUDA graphs (fixed shapes, padded buckets, one cache for the
    model's lifetime), run as they are on the CPU."""
    length = fixed_length(tiny.max_positions, tiny.max_tokens)
    fixed = FixedSteps(tiny.decoder, 6, length, tiny.image_tokens)
    requests = requests_for(24, seed=3)
    for seed in (4, 5):  # twice over the same cache: stale slots from the first run are harmless
        batch = RunningBatch(tiny.decoder, tiny.stop_token, fixed)
        finished, joins = decode_staggered(tiny, batch, requests, seed=seed)
        assert joins >= 3
        for ticket, (image, prompt) in enumerate(requests):
            assert finished[ticket] == alone(tiny, image, prompt), (seed, ticket)
        assert batch.slots is fixed.slots


def test_sequences_that_leave_early_leave_the_others_unchanged(tiny: Captioner) -> None:
    requests = requests_for(20, seed=6)
    leave = frozenset({1, 4, 5, 9, 14})
    batch = tiny.running_batch(16)
    finished, _ = decode_staggered(tiny, batch, requests, seed=7, leave=leave)
    kept = [t for t in range(len(requests)) if t not in leave or t in finished]
    assert len(kept) >= len(requests) - len(leave)
    for ticket in kept:
        image, prompt = requests[ticket]
        assert finished[ticket] == alone(tiny, image, prompt), ticket


def test_the_compiled_step_is_optimised_at_load() -> None:
    """TorchScript profiles a compiled module's first run and optimises on its second: the
    load runs both, so the first caption's steps run the optimised graph."""
    captioner = Captioner.load(str(TINY_BLIP), CPU, torch.float32, 30)
    batch = captioner.running_batch(1)
    captioner.join(batch, [(0, captioner.preprocess(images(1, 5)[0]))])
    batch.step()
    ran = torch.jit.last_executed_optimized_graph()
    assert "aten::scaled_dot_product_attention" in str(ran)  # the step's graph
    assert "prim::profile" not in str(ran)


def test_min_new_tokens_is_honoured_as_generate_does() -> None:
    captioner = Captioner.load(str(TINY_BLIP), CPU, torch.float32, 30)
    captioner.model.text_decoder.generation_config.min_new_tokens = 9
    requests = requests_for(8, seed=8)
    finished, _ = decode_staggered(captioner, captioner.running_batch(16), requests, seed=9)
    for ticket, (image, prompt) in enumerate(requests):
        expected = alone(captioner, image, prompt)
        assert finished[ticket] == expected
        assert len(expected) - len(captioner.prompt_tokens(prompt)) >= 9


async def test_staggered_requests_through_the_service_equal_generate_alone(
    tiny: Captioner, tmp_path: Path
) -> None:
    requests = requests_for(24, seed=10)
    workers = Workers()
    settings = tiny_settings(DATA_DIR=str(tmp_path), DTYPE="float32", DEVICE=str(tiny.device))
    vision = VisionService(settings, workers)
    await vision.start()

    async def arrive(i: int, image: Image.Image, prompt: str | None) -> str:
        await asyncio.sleep(0.004 * i)
        return await vision.caption(image, prompt)

    try:
        got = await asyncio.gather(*(arrive(i, im, p) for i, (im, p) in enumerate(requests)))
        shared = vision.scheduler.stats["caption"].mean
    finally:
        await vision.close()
        workers.shutdown()
    expected = tiny.postprocess([alone(tiny, im, p) for im, p in requests])
    assert list(got) == [" ".join(text.split()) for text in expected]
    assert shared > 1, "no decode step was shared"


@pytest.mark.slow
def test_full_size_captions_joining_mid_decode_equal_generate_alone(
    full_size_models: tuple[Path, Path],
) -> None:
    blip, _ = full_size_models
    captioner = Captioner.load(str(blip), CPU, torch.float32, 20)
    captioner.model.text_decoder.generation_config.min_new_tokens = 20  # as the benchmark
    requests: list[tuple[Image.Image, str | None]] = [
        (photo(640, 480, seed), None) for seed in range(4)
    ]
    finished, joins = decode_staggered(captioner, captioner.running_batch(16), requests, 11)
    assert joins >= 1
    for ticket, (image, prompt) in enumerate(requests):
        assert finished[ticket] == alone(captioner, image, prompt), ticket
