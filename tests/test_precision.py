"""Speed must not change answers: the chosen dtype, batching and the fast pixels."""

from __future__ import annotations

import asyncio
import io
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import CLIPModel, CLIPProcessor

from bench.photos import photo
from bot.config import parse_settings
from bot.images.decode import load_image
from bot.vision import packed
from bot.vision.blip import Captioner
from bot.vision.clip import Embedder
from bot.vision.decoder import TextDecoder
from bot.vision.devices import default_batch_max, packed_weights, resolve_dtype
from bot.vision.running import Decoding, RunningBatch
from bot.vision.service import VisionService
from bot.workers import Workers
from tests.conftest import TINY_BLIP, TINY_CLIP, TINY_SIGLIP, fresh_samples, tiny_settings
from tests.shapes import CLASSES, caption_of, draw_shape
from tests.test_search_models import top_three
from tests.test_step_weights import CONFIGS


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
            ranks.append(top_three(scores))
        assert (ranks[0] == ranks[1]).all()
    finally:
        await close(fast)


async def test_batched_captions_equal_one_at_a_time(service_fp32: VisionService) -> None:
    fp32 = service_fp32
    images = [load_image(data) for data, _, _ in fresh_samples(seed=8, count=16)]
    alone = [await fp32.caption(image) for image in images]
    steps = fp32.scheduler.stats["caption"]
    assert steps.mean == 1.0
    before = steps.batches, steps.items
    together = await asyncio.gather(*(fp32.caption(image) for image in images))
    assert list(together) == alone
    mean = (steps.items - before[1]) / (steps.batches - before[0])
    assert mean > 4, "the concurrent captions never shared decode steps"


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
    assert not packed_weights("auto", cuda)


def test_packed_weights_only_where_measured_and_never_under_float32() -> None:
    cpu = torch.device("cpu")
    assert not packed_weights("float32", cpu) and not packed_weights("bfloat16", cpu)
    expected = resolve_dtype("auto", cpu) == torch.float32 and packed.supported()
    assert packed_weights("auto", cpu) == expected


def tiny_captioners() -> tuple[Captioner, Captioner]:
    cpu = torch.device("cpu")
    fp32 = Captioner.load(str(TINY_BLIP), cpu, torch.float32, 30)
    return fp32, Captioner.load(str(TINY_BLIP), cpu, torch.float32, 30, packed=True)


def test_an_int8_image_embedding_does_not_depend_on_its_batch() -> None:
    """Each image's inputs are quantised on their own: a bright, busy image beside it in the
    batch leaves a plain image's embedding as it is alone."""
    _, fast = tiny_captioners()
    plain = fast.preprocess(Image.new("RGB", (64, 64), (90, 120, 90))).pixel_values
    busy = fast.preprocess(photo(64, 64, 3)).pixel_values * 4
    with torch.inference_mode():
        alone = fast.model.vision_model(pixel_values=plain)[0][0]
        together = fast.model.vision_model(pixel_values=torch.cat([plain, busy]))[0][0]
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_a_packed_captioner_keeps_its_text_weights_once() -> None:
    """The decode loop runs on its own packed copies; the text decoder's float32 linear layers
    (about 400 MB for the full-size BLIP) are freed."""
    fp32, fast = tiny_captioners()
    assert not any(type(m) is nn.Linear for m in fast.model.text_decoder.modules())
    assert any(type(m) is nn.Linear for m in fp32.model.text_decoder.modules())


@pytest.mark.parametrize("family", ["blip", "clip", "siglip"])
def test_packed_models_let_go_of_their_checkpoint_file(family: str, tmp_path: Path) -> None:
    """Packing reads every float32 weight it replaces through the checkpoint's memory map; once
    loaded, nothing may keep that map (and the pages read through it) in the process. A copy of
    the checkpoint, so that a float32 model another test keeps alive does not hold its map."""
    cpu = torch.device("cpu")
    folder = {"blip": TINY_BLIP, "clip": TINY_CLIP, "siglip": TINY_SIGLIP}[family]
    folder = Path(shutil.copytree(folder, tmp_path / folder.name))
    if family == "blip":
        loaded: object = Captioner.load(str(folder), cpu, torch.float32, 30, packed=True)
    else:
        loaded = Embedder.load(str(folder), cpu, torch.float32, packed=True)
    checkpoint = str((folder / "model.safetensors").resolve())
    assert loaded is not None and checkpoint not in Path("/proc/self/maps").read_text()


@pytest.mark.slow
def test_packed_weights_agree_with_float32_on_the_benchmark_images(
    full_size_models: tuple[Path, Path],
) -> None:
    """Full-size BLIP, random weights: with the packed weights (int8 vision encoder, decode
    steps on float16 or int8 weights, float32 or bfloat16 image keys and values) the greedy
    token equals float32's at no fewer than 99% of the steps of the benchmark's photos (each
    step fed float32's tokens so far, so that one early difference is counted once)."""
    blip, _ = full_size_models
    cpu = torch.device("cpu")
    fp32 = Captioner.load(str(blip), cpu, torch.float32, 20)
    fast = Captioner.load(str(blip), cpu, torch.float32, 20, packed=True)
    with torch.inference_mode():
        pixels = torch.cat([fp32.preprocess(photo(640, 480, s)).pixel_values for s in range(16)])
        embeds = [
            torch.cat([c.model.vision_model(pixel_values=p)[0] for p in pixels.split(4)])
            for c in (fp32, fast)
        ]
        paths = greedy_paths(fp32.decoder, fp32.stop_token, fp32.start_token, embeds[0], 20)
        agree = {
            (kind, cache): agreement(
                TextDecoder(fp32.model.text_decoder, steps=kind, cross_dtype=cache),
                embeds[1],
                paths,
            )
            for kind, cache in CONFIGS
        }
    assert min(agree.values()) >= 0.99, agree


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


def greedy_paths(
    decoder: TextDecoder, stop: int, start: int, embeds: torch.Tensor, tokens: int
) -> list[list[int]]:
    """Each image's greedy tokens, run to `tokens` new ones (the separator held back)."""
    batch = RunningBatch(decoder, stop)
    batch.join([Decoding(i, [start], tokens, tokens) for i in range(embeds.shape[0])], embeds)
    paths: dict[int, list[int]] = {}
    while len(batch):
        paths.update((s.ticket, s.tokens) for s in batch.step())
    return [paths[i] for i in range(embeds.shape[0])]


def agreement(decoder: TextDecoder, embeds: torch.Tensor, paths: list[list[int]]) -> float:
    """Share of steps where `decoder`, fed each path's tokens so far, picks the path's next."""
    n, steps = len(paths), len(paths[0]) - 1
    slots = decoder.empty_slots(n, steps, embeds.shape[1])
    decoder.write_cross(slots, 0, embeds)
    same = 0
    for position in range(steps):
        fed = torch.tensor([path[position] for path in paths])
        logits = decoder.step(fed, torch.full((n,), position), slots, position + 1)
        chosen = logits.argmax(dim=-1).tolist()
        same += sum(c == path[position + 1] for c, path in zip(chosen, paths, strict=True))
    return same / (n * steps)
