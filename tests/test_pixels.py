"""The fast pixel pipeline against the checkpoints' own image processors."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image
from transformers import (
    BlipImageProcessor,
    BlipProcessor,
    CLIPImageProcessor,
    CLIPProcessor,
    SiglipImageProcessor,
    SiglipProcessor,
)

from bench.photos import photo
from bot.images.decode import load_image
from bot.vision.pixels import PixelPipeline
from tests.conftest import TINY_BLIP, TINY_CLIP, TINY_SIGLIP
from tests.shapes import CLASSES, draw_shape

PROCESSORS = {
    "blip-base": BlipImageProcessor(size={"height": 384, "width": 384}),
    "clip-base": CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    ),
    "blip-tiny": BlipProcessor.from_pretrained(TINY_BLIP).image_processor,
    "clip-tiny": CLIPProcessor.from_pretrained(TINY_CLIP).image_processor,
    # google/siglip-base-patch16-224 and siglip2-base-patch16-224: a plain resize, no crop
    "siglip-base": SiglipImageProcessor(size={"height": 224, "width": 224}),
    "siglip-tiny": SiglipProcessor.from_pretrained(TINY_SIGLIP).image_processor,
}


def sample_images() -> list[Image.Image]:
    rng = random.Random(3)
    images = [draw_shape(rng, c, s, rng.randint(40, 700)) for c, s in CLASSES[:6]]
    images += [photo(640, 480, 1), photo(300, 900, 2), photo(33, 47, 3), photo(1024, 1024, 4)]
    return images


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_same_tensors_as_the_reference_processor(name: str) -> None:
    processor = PROCESSORS[name]
    pipeline = PixelPipeline.from_processor(processor)
    for image in sample_images():
        reference = processor(images=image, return_tensors="pt")["pixel_values"][0].numpy()
        ours = pipeline([image])[0].numpy()
        assert ours.shape == reference.shape and ours.dtype == np.float32
        assert np.abs(ours - reference).max() < 1e-4


@pytest.mark.parametrize("name", ["blip-base", "clip-base", "siglip-base"])
def test_draft_decoded_jpegs_stay_within_tolerance(name: str) -> None:
    processor = PROCESSORS[name]
    pipeline = PixelPipeline.from_processor(processor)
    for seed in range(4):
        buffer = io.BytesIO()
        photo(1280, 960, seed).save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        full = Image.open(io.BytesIO(data)).convert("RGB")
        fast = load_image(data)
        assert fast.size < full.size  # draft really decoded at reduced scale
        reference = processor(images=full, return_tensors="pt")["pixel_values"][0].numpy()
        ours = pipeline([fast])[0].numpy()
        mad = float(np.abs(ours - reference).mean())
        assert mad <= 0.02, f"mean absolute difference {mad:.4f}"
