"""The seed's reference path: one image per call, processor then model, float32.

Warmed up and under `torch.inference_mode`, as a fair baseline should be.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor, CLIPModel, CLIPProcessor

T = TypeVar("T")


def on_own_thread(work: Callable[[], T]) -> T:
    """Runs the seed's side on a thread that ends with it. torch's OpenMP keeps a team of
    threads for every thread that has run a parallel region; with more of them than cores,
    libgomp stops spin-waiting between regions, and the service's decode steps (many short
    regions on its model thread) took 31 ms instead of 19 on 2 cores after the seed had run on
    the main thread. The bot runs torch on its model thread alone; a thread that ends takes its
    team with it, so the service is measured as it runs there."""
    with ThreadPoolExecutor(1, thread_name_prefix="seed") as pool:
        return pool.submit(work).result()


class SeedPath:
    def __init__(self, blip: Path, clip: Path, device: torch.device, tokens: int) -> None:
        self.device = device
        self.tokens = tokens
        self.blip_processor = BlipProcessor.from_pretrained(blip)
        self.blip = BlipForConditionalGeneration.from_pretrained(blip).to(device).eval()
        self.clip_processor = CLIPProcessor.from_pretrained(clip)
        self.clip = CLIPModel.from_pretrained(clip).to(device).eval()

    def caption(self, image: Image.Image) -> str:
        with torch.inference_mode():
            inputs = self.blip_processor(images=image, return_tensors="pt").to(self.device)
            out = self.blip.generate(
                **inputs, max_new_tokens=self.tokens, min_new_tokens=self.tokens
            )
        return str(self.blip_processor.decode(out[0], skip_special_tokens=True))

    def embed_jpeg(self, data: bytes) -> torch.Tensor:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        with torch.inference_mode():
            inputs = self.clip_processor(images=image, return_tensors="pt").to(self.device)
            return self.clip.get_image_features(**inputs).pooler_output.cpu()

    def caption_durations(self, images: list[Image.Image]) -> list[float]:
        """Seconds for each caption, one after another (warm up first)."""
        durations = []
        for image in images:
            started = time.perf_counter()
            self.caption(image)
            durations.append(time.perf_counter() - started)
        return durations

    def time_per_embedding(self, jpegs: list[bytes]) -> float:
        self.embed_jpeg(jpegs[0])
        started = time.perf_counter()
        for data in jpegs:
            self.embed_jpeg(data)
        return (time.perf_counter() - started) / len(jpegs)

    def close(self) -> None:
        del self.blip, self.clip
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
