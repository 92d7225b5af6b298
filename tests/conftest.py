"""Shared fixtures: the tiny trained models, the cached full-size ones, settings, the vision
service, a network guard."""

from __future__ import annotations

import os

# The hub is never reached from tests; huggingface_hub reads this once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"

import io
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import transformers
from PIL import Image

from bot.config import Settings, parse_settings
from bot.vision.service import VisionService
from bot.workers import Workers
from tests import netguard
from tests.fixture_cache import cached_folder, source_key
from tests.shapes import random_sample

transformers.logging.disable_progress_bar()

FIXTURES = Path(__file__).parent / "fixtures"
TINY_BLIP = FIXTURES / "models" / "blip-tiny-shapes"
TINY_CLIP = FIXTURES / "models" / "clip-tiny-shapes"
TINY_SIGLIP = FIXTURES / "models" / "siglip-tiny-shapes"
# The search model families, each as a tiny model trained on the shapes (tests/fixtures/).
SEARCH_MODELS = {"clip": TINY_CLIP, "siglip": TINY_SIGLIP}


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    """Any connection beyond 127.0.0.1 fails the test that made it."""
    netguard.install()
    yield
    netguard.uninstall()


def tiny_settings(**overrides: str) -> Settings:
    env = {
        "CAPTION_MODEL": str(TINY_BLIP),
        "SEARCH_MODEL": str(TINY_CLIP),
        "DEVICE": "cpu",
        "PRELOAD_MODELS": "true",
    }
    env.update(overrides)
    return parse_settings(env)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[VisionService]:
    """The tiny models in the dtype `auto` chooses here, as the bot would run them."""
    workers = Workers()
    vision = VisionService(tiny_settings(DATA_DIR=str(tmp_path)), workers)
    await vision.start()
    yield vision
    await vision.close()
    workers.shutdown()


@pytest.fixture
async def service_fp32(tmp_path: Path) -> AsyncIterator[VisionService]:
    workers = Workers()
    vision = VisionService(tiny_settings(DATA_DIR=str(tmp_path), DTYPE="float32"), workers)
    await vision.start()
    yield vision
    await vision.close()
    workers.shutdown()


def encode(image: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def fresh_samples(seed: int, count: int) -> list[tuple[bytes, str, str]]:
    """(encoded bytes, format, caption) for newly drawn images of 48 to 1024 px."""
    rng = random.Random(seed)
    samples = []
    sizes = [48, 1024] + [rng.randint(48, 1024) for _ in range(count - 2)]
    for i, size in enumerate(sizes):
        image, caption = random_sample(rng, size)
        fmt = "JPEG" if i % 2 else "PNG"
        samples.append((encode(image, fmt), fmt, caption))
    return samples


@pytest.fixture(scope="session")
def full_size_models() -> tuple[Path, Path]:
    """blip-image-captioning-base and clip-vit-base-patch32 architectures, random weights.

    1.5 GB, made once into the test cache (tests/fixture_cache.py) and remade when the code
    that makes them or transformers changes.
    """
    from bench import random_models

    def build(folder: Path) -> None:
        random_models.save_random_blip(folder / "blip")
        random_models.save_random_clip(folder / "clip")

    key = source_key(Path(random_models.__file__), extra=transformers.__version__)
    folder = cached_folder("full-size", key, build)
    return folder / "blip", folder / "clip"
