"""BLIP's vision encoder on a CPU: the images of a batch joining the decode are encoded one after
another, so that no pass asks the kernel for fresh memory (full-size BLIP, random weights)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import torch

from bench.photos import photo
from bot.vision.blip import Captioner

IMAGES = 8


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.slow
def test_a_batch_is_encoded_without_fresh_memory(full_size_models: tuple[Path, Path]) -> None:
    """With int8 weights (the packed path), 8 images encoded as one batch page-faulted about
    450,000 pages (1.7 GB) into every pass, a quarter of the encoder's time; one after another,
    about 23,000. Each image's embedding is what it gets alone."""
    blip, _ = full_size_models
    captioner = Captioner.load(str(blip), torch.device("cpu"), torch.float32, 20, packed=True)
    pixels = torch.cat(
        [captioner.preprocess(photo(640, 480, n)).pixel_values for n in range(IMAGES)]
    )
    with torch.inference_mode():
        captioner.encode(pixels)  # the allocator grows to what one image needs, once
        before = minor_faults()
        embeds = captioner.encode(pixels)
        faults = minor_faults() - before
        alone = captioner.model.vision_model(pixel_values=pixels[3:4])[0]
    assert faults < IMAGES * 6_000, faults
    assert embeds.shape[0] == IMAGES
    assert torch.equal(embeds[3:4], alone)
