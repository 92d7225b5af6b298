"""Speed must not change answers: the chosen dtype, batching and the fast pixels."""

from __future__ import annotations

import asyncio
import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from bench.photos import photo
from bot.config import parse_settings
from bot.images.decode import load_image
from bot.vision.devices import resolve_dtype
from bot.vision.service import VisionService, default_batch_max
from bot.workers import Workers
from tests.conftest import fresh_samples, tiny_settings
from tests.shapes import CLASSES, caption_of, draw_shape


async def make_service(**env: str) -> VisionService:
    vision = VisionService(tiny_settings(**env), Workers())
    await vision.start()
    return vision


async def close(vision: VisionService) -> None:
    await vision.close()
    vision.workers.shutdown()


async def test_auto_dtype_gives_the_same_answers_as_float32(service_fp32: VisionService) -> None:
    fp32 = service_fp32
    fast = await make_service(DTYPE="auto")
    try:
        assert fast.dtype == resolve_dtype("auto", torch.device("cpu"))
        for data, _fmt, _caption in fresh_samples(seed=31337, count=48):
            image = load_image(data)
            assert await fast.caption(image) == await fp32.caption(image)
        rng = random.Random(12)
        images = [draw_shape(rng, c, s, rng.randint(64, 400)) for c, s in CLASSES]
        texts = [caption_of(c, s) for c, s in CLASSES]
        ranks = []
        for vision in (fp32, fast):
            scores = (await vision.embed_text(texts)) @ (await vision.embed_images(images)).T
            ranks.append(scores.argsort(axis=1)[:, ::-1][:, :3])
        assert (ranks[0] == ranks[1]).all()
    finally:
        await close(fast)


async def test_batched_captions_equal_one_at_a_time(service_fp32: VisionService) -> None:
    fp32 = service_fp32
    images = [load_image(data) for data, _, _ in fresh_samples(seed=8, count=16)]
    alone = [await fp32.caption(image) for image in images]
    assert fp32.scheduler.stats.mean == 1.0
    before = fp32.scheduler.stats.batches
    together = await asyncio.gather(*(fp32.caption(image) for image in images))
    assert list(together) == alone
    batches = fp32.scheduler.stats.batches - before
    assert batches < 16, "the concurrent captions never ran as a batch"


async def test_models_unload_when_idle_and_reload_on_demand() -> None:
    vision = await make_service(MODEL_IDLE_UNLOAD_S="0.2")
    try:
        image = draw_shape(random.Random(4), "green", "circle", 96)
        assert await vision.caption(image) == "a green circle"
        for _ in range(50):
            if not vision.loaded:
                break
            await asyncio.sleep(0.05)
        assert not vision.loaded
        assert await vision.caption(image) == "a green circle"
        assert vision.loaded
    finally:
        await close(vision)


def test_cuda_defaults() -> None:
    cuda = torch.device("cuda")
    assert resolve_dtype("auto", cuda) == torch.float16
    assert default_batch_max(cuda) == 64 and default_batch_max(torch.device("cpu")) == 16


@pytest.mark.slow
async def test_fast_image_embeddings_match_the_reference_path(
    full_size_models: tuple[Path, Path],
) -> None:
    """Full-size CLIP: draft-decoded JPEGs, fast pixels, auto dtype, batched vs the seed path."""
    _, clip = full_size_models
    processor = CLIPProcessor.from_pretrained(clip)
    model = CLIPModel.from_pretrained(clip).eval()
    jpegs = []
    for seed in range(6):
        buffer = io.BytesIO()
        photo(1280, 960, seed).save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    reference = []
    with torch.inference_mode():
        for data in jpegs:
            inputs = processor(
                images=Image.open(io.BytesIO(data)).convert("RGB"), return_tensors="pt"
            )
            features = model.get_image_features(**inputs).pooler_output[0]
            reference.append((features / features.norm()).numpy())
    vision = VisionService(
        parse_settings({"SEARCH_MODEL": str(clip), "PRELOAD_MODELS": "false"}), Workers()
    )
    try:
        images = [load_image(data) for data in jpegs]
        fast = await vision.embed_images(images, background=True)
    finally:
        await close(vision)
    cosines = np.sum(fast * np.stack(reference), axis=1)
    assert cosines.min() >= 0.99, cosines
