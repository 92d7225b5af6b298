"""BLIP's images on a CPU: a batch joining the decode is encoded one image after another, so that
no pass asks the kernel for fresh memory, and the prep threads leave torch's parallel kernels to
the model thread (full-size BLIP, random weights)."""

from __future__ import annotations

import os
import resource
from concurrent.futures import ThreadPoolExecutor
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
    4,000 to 130,000. Each image's embedding is what it gets alone."""
    blip, _ = full_size_models
    captioner = Captioner.load(str(blip), torch.device("cpu"), torch.float32, 20, packed=True)
    pixels = torch.cat(
        [captioner.preprocess(photo(640, 480, n)).pixel_values for n in range(IMAGES)]
    )
    with torch.inference_mode():
        captioner.encode(pixels)  # the allocator grows to what one image needs, once
        counts = []
        for _ in range(3):  # how much the allocator hands back between passes varies
            before = minor_faults()
            embeds = captioner.encode(pixels)
            counts.append(minor_faults() - before)
        alone = captioner.model.vision_model(pixel_values=pixels[3:4])[0]
    assert min(counts) < IMAGES * 10_000, counts
    assert embeds.shape[0] == IMAGES
    assert torch.equal(embeds[3:4], alone)


def process_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.slow
@pytest.mark.skipif(torch.get_num_threads() < 2, reason="torch runs no parallel region")
def test_preprocessing_leaves_parallel_work_to_the_model_thread(
    full_size_models: tuple[Path, Path],
) -> None:
    """A prep thread that runs one of torch's parallel kernels (converting a 384 x 384 image to
    bfloat16 did) gets a team of OpenMP threads that outlives the call; with more of them than
    cores, the model thread's decode steps slowed by half."""
    blip, _ = full_size_models
    captioner = Captioner.load(str(blip), torch.device("cpu"), torch.bfloat16, 20)
    with ThreadPoolExecutor(1) as prep:
        prep.submit(process_threads).result()  # the prep thread is running
        before = process_threads()
        inputs = prep.submit(captioner.preprocess, photo(640, 480, 0)).result()
        assert process_threads() == before
    assert inputs.pixel_values.shape == (1, 3, 384, 384)
