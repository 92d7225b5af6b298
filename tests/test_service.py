"""The vision service with the tiny trained models: real captions, real rankings."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import BlipForConditionalGeneration, BlipProcessor, CLIPModel, CLIPProcessor

from bot.config import parse_settings
from bot.images.decode import load_image
from bot.vision.blip import Captioner
from bot.vision.checkpoints import ModelLoadError
from bot.vision.clip import Embedder
from bot.vision.devices import default_batch_wait_ms
from bot.vision.scheduler import Busy
from bot.vision.service import VisionService
from bot.workers import Workers
from tests.conftest import TINY_BLIP, TINY_CLIP, fresh_samples, tiny_settings
from tests.shapes import CLASSES, caption_of, draw_shape


async def test_captions_fresh_images_exactly(service: VisionService) -> None:
    samples = fresh_samples(seed=20261126, count=48)
    correct = 0
    for data, _fmt, expected in samples:
        image = load_image(data)
        correct += await service.caption(image) == expected
    assert correct >= 47, f"{correct}/48 exact captions"


async def test_conditional_caption_begins_with_prompt(service: VisionService) -> None:
    image = draw_shape(random.Random(3), "blue", "square", 200)
    caption = await service.caption(image, prompt="a blue")
    assert caption.startswith("a blue")


async def test_ranks_the_right_image_first_for_every_class(service: VisionService) -> None:
    rng = random.Random(77)
    images = [draw_shape(rng, colour, shape, rng.randint(64, 512)) for colour, shape in CLASSES]
    image_vectors = await service.embed_images(images)
    text_vectors = await service.embed_text([caption_of(c, s) for c, s in CLASSES])
    assert np.allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-5)
    scores = text_vectors @ image_vectors.T
    assert list(scores.argmax(axis=1)) == list(range(len(CLASSES)))


async def test_long_text_is_truncated_to_the_model_limit(service: VisionService) -> None:
    vectors = await service.embed_text(["a red square " * 200, "🦜 @everyone <script>"])
    assert vectors.shape[0] == 2 and np.isfinite(vectors).all()


async def test_caption_parity_with_reference_code(service_fp32: VisionService) -> None:
    service = service_fp32
    processor = BlipProcessor.from_pretrained(TINY_BLIP)
    model = BlipForConditionalGeneration.from_pretrained(TINY_BLIP).eval()
    for data, _fmt, _caption in fresh_samples(seed=5, count=12):
        image = load_image(data)
        with torch.inference_mode():
            inputs = processor(images=image, return_tensors="pt")
            out = model.generate(**inputs, max_new_tokens=service.settings.caption_max_tokens)
        expected = processor.decode(out[0], skip_special_tokens=True)
        assert await service.caption(image) == expected


async def test_ranking_parity_with_reference_code(service_fp32: VisionService) -> None:
    service = service_fp32
    processor = CLIPProcessor.from_pretrained(TINY_CLIP)
    model = CLIPModel.from_pretrained(TINY_CLIP).eval()
    rng = random.Random(11)
    images = [draw_shape(rng, colour, shape, 160) for colour, shape in CLASSES]
    for colour, shape in CLASSES:
        query = caption_of(colour, shape)
        with torch.inference_mode():
            inputs = processor(text=[query], images=images, return_tensors="pt", padding=True)
            logits = model(**inputs).logits_per_image[:, 0]
            reference = (logits / model.logit_scale.exp()).numpy()
        scores = (await service.embed_images(images)) @ (await service.embed_text([query]))[0]
        assert int(scores.argmax()) == int(reference.argmax())
        assert np.abs(scores - reference).max() <= 1e-4


@pytest.mark.slow
async def test_event_loop_keeps_running_during_a_long_model_call(
    full_size_models: tuple[Path, Path],
) -> None:
    """Eight full-size captions of up to 40 tokens keep the model thread busy for a while on
    any CPU: one of 20 tokens took under 0.5 s on a 2-core AMD EPYC (Zen 5)."""
    blip, clip = full_size_models
    settings = parse_settings(
        {"CAPTION_MODEL": str(blip), "SEARCH_MODEL": str(clip), "CAPTION_MAX_TOKENS": "40"}
    )
    workers = Workers()
    vision = VisionService(settings, workers)
    images = [draw_shape(random.Random(i), "red", "circle", 384) for i in range(8)]
    try:
        await vision.captioner()
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        await asyncio.gather(*(vision.caption(image) for image in images))
        elapsed = time.perf_counter() - started
        stop.set()
        await task
    finally:
        await vision.close()
        workers.shutdown()
    assert elapsed >= 0.5, f"the model call took only {elapsed:.2f} s"
    assert max(gaps) <= 0.05, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"


async def test_missing_model_folder_names_the_setting(tmp_path: Path) -> None:
    settings = tiny_settings(CAPTION_MODEL=str(tmp_path / "nope"))
    workers = Workers()
    vision = VisionService(settings, workers)
    with pytest.raises(ModelLoadError, match=r"^CAPTION_MODEL: .*does not exist"):
        await vision.captioner()
    workers.shutdown()


async def test_unknown_hub_id_offline_names_the_setting() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by conftest before transformers loads
    settings = tiny_settings(SEARCH_MODEL="glimpse-test/no-such-model")
    workers = Workers()
    vision = VisionService(settings, workers)
    with pytest.raises(ModelLoadError, match=r"^SEARCH_MODEL: cannot load 'glimpse-test/no-such"):
        await vision.embedder()
    workers.shutdown()


async def _blocked_model_lane(vision: VisionService) -> tuple[asyncio.Future[None], asyncio.Event]:
    """Holds the model thread until the returned event is set (as a long batch would)."""
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def hold() -> None:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)

    held = asyncio.ensure_future(vision.workers.run("model", hold))
    await asyncio.sleep(0.05)
    return held, release


async def test_a_request_refused_as_busy_is_never_preprocessed() -> None:
    vision = VisionService(tiny_settings(MAX_PENDING="1", BATCH_WAIT_MS="0"), Workers())
    captioner = await vision.captioner()
    prepared: list[int] = []
    real = captioner.preprocess

    def counting(*args: object, **kwargs: object) -> object:
        prepared.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    captioner.preprocess = counting  # type: ignore[method-assign]
    image = draw_shape(random.Random(2), "red", "square", 64)
    held, release = await _blocked_model_lane(vision)
    try:
        running = asyncio.ensure_future(vision.caption(image))  # its batch waits for the lane
        await asyncio.sleep(0.1)
        waiting = asyncio.ensure_future(vision.caption(image))  # queued: the one free place
        await asyncio.sleep(0.1)
        with pytest.raises(Busy):
            await vision.caption(image)
        await asyncio.sleep(0.3)  # preprocessing, had it started, would have run by now
        assert len(prepared) == 2
        release.set()
        assert await running == await waiting == "a red square"
    finally:
        release.set()
        await held
        await vision.close()
        vision.workers.shutdown()


async def test_idle_models_are_not_unloaded_while_a_batch_runs() -> None:
    vision = VisionService(tiny_settings(MODEL_IDLE_UNLOAD_S="0.2"), Workers())
    await vision.start()
    image = draw_shape(random.Random(3), "blue", "triangle", 64)
    held, release = await _blocked_model_lane(vision)
    try:
        caption = asyncio.ensure_future(vision.caption(image))
        for _ in range(12):  # well past the idle limit, while the batch waits for the lane
            await asyncio.sleep(0.1)
            assert vision.loaded
        release.set()
        assert await caption == "a blue triangle"
        for _ in range(60):
            if not vision.loaded:
                break
            await asyncio.sleep(0.05)
        assert not vision.loaded  # and once nothing runs, they go
    finally:
        release.set()
        await held
        await vision.close()
        vision.workers.shutdown()


def counted_loads(monkeypatch: pytest.MonkeyPatch, model: type[Captioner | Embedder]) -> list[str]:
    """The checkpoints `model.load` is called with from now on, in order; it still loads."""
    loads: list[str] = []
    real = model.load

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "load", counted)
    return loads


async def _lazy_and_blocked(
    monkeypatch: pytest.MonkeyPatch, model: type[Captioner | Embedder]
) -> tuple[list[str], VisionService, asyncio.Future[None], asyncio.Event]:
    """A started service that loads its models on first use, the loads of `model` counted,
    its model lane held by a call of the test's until the event is set."""
    loads = counted_loads(monkeypatch, model)
    vision = VisionService(tiny_settings(PRELOAD_MODELS="false"), Workers())
    await vision.start()
    held, release = await _blocked_model_lane(vision)
    return loads, vision, held, release


async def test_a_load_outlives_the_request_that_started_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PRELOAD_MODELS=false the first request loads the model; a request given up
    meanwhile (its message deleted, say) leaves the model loaded for the next, not loaded
    twice."""
    loads, vision, held, release = await _lazy_and_blocked(monkeypatch, Captioner)
    image = draw_shape(random.Random(5), "green", "circle", 64)
    try:
        given_up = asyncio.ensure_future(vision.caption(image))
        await asyncio.sleep(0.1)  # its load waits for the lane
        given_up.cancel()
        release.set()
        await held
        with pytest.raises(asyncio.CancelledError):
            await given_up
        for _ in range(100):
            if vision.loaded:
                break
            await asyncio.sleep(0.05)
        assert vision.loaded  # with no one left waiting for it
        assert await vision.caption(image) == "a green circle"
        assert loads == [str(TINY_BLIP)]
    finally:
        release.set()
        await vision.close()
        vision.workers.shutdown()


async def test_a_load_not_begun_when_the_service_closes_is_not_begun_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A load runs to its end whoever gave up on it; one still waiting for the load lock when
    the service closes would only hold up the close (a download, on a first start)."""
    loads, vision, held, release = await _lazy_and_blocked(monkeypatch, Embedder)
    image = draw_shape(random.Random(5), "green", "circle", 64)
    try:
        captioning = asyncio.ensure_future(vision.caption(image))  # loads BLIP, on the lane
        await asyncio.sleep(0.1)
        searching = asyncio.ensure_future(vision.embed_text(["a green circle"]))  # waits
        await asyncio.sleep(0.1)
        closing = asyncio.ensure_future(vision.close())
        await asyncio.sleep(0.1)
        release.set()
        await asyncio.wait_for(closing, 30)
        assert loads == []
        for request in (captioning, searching):
            with pytest.raises(BaseException):  # noqa: B017 (cancelled, or refused as closed)
                await request
    finally:
        release.set()
        await held
        vision.workers.shutdown()


async def test_on_a_cpu_nothing_waits_for_company_yet_requests_still_share_batches() -> None:
    vision = VisionService(tiny_settings(), Workers())
    release = asyncio.Event()
    try:
        await vision.start()
        assert vision.scheduler.wait_s == 0  # BATCH_WAIT_MS left empty on a CPU
        assert default_batch_wait_ms(torch.device("cuda")) == 5
        images = [draw_shape(random.Random(i), "red", "square", 64) for i in range(3)]
        await vision.embed_images(images)  # asked for together: one batch
        image = vision.scheduler.stats["image"]
        assert (image.batches, image.items) == (1, 3)
        held, release = await _blocked_model_lane(vision)
        first = asyncio.ensure_future(vision.embed_text(["a red square"]))
        await asyncio.sleep(0.05)
        later = [asyncio.ensure_future(vision.embed_text([t])) for t in ("a blue", "a green")]
        await asyncio.sleep(0.05)
        release.set()
        await held
        rows = [await first, *[await row for row in later]]
        # The first ran at once, alone; the two that came while it ran shared the next batch.
        assert vision.scheduler.stats["text"].batches == 2
        assert vision.scheduler.stats["text"].items == 3
        assert np.allclose(rows[1], await vision.embed_text(["a blue"]), atol=1e-6)
    finally:
        release.set()
        await vision.close()
        vision.workers.shutdown()


def test_a_batch_wait_given_is_kept_on_a_cpu() -> None:
    vision = VisionService(tiny_settings(BATCH_WAIT_MS="5", PRELOAD_MODELS="false"), Workers())
    try:
        assert vision.scheduler.wait_s == 0.005
    finally:
        vision.workers.shutdown()
