"""Decoding and hashing images on the worker threads, for the fetcher and the CLI."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

from PIL import Image

from bot.config import Settings
from bot.images.budget import PixelBudget
from bot.images.decode import ImageLimits, load_frames, load_image_file
from bot.images.frames import Frames
from bot.workers import Workers

with contextlib.suppress(ImportError):  # (Pillow 11.3 and later)
    from PIL import AvifImagePlugin

    # One thread per decode: the prep pool is the parallelism, and Pillow's default (0) gives
    # libavif a thread per CPU for each image, beside the other prep threads and the model's.
    AvifImagePlugin.DEFAULT_MAX_THREADS = 1


@dataclass(frozen=True)
class Decoded:
    digest: str  # sha256 of the bytes, so that identical images are embedded once
    image: Image.Image  # the picture to caption (an animation's first frame that is not blank)
    frames: tuple[Image.Image, ...]  # the pictures to embed: one, or up to 4 of an animation


class ImageLoader:
    """Bytes or files in, safe RGB images out; never on the event loop."""

    def __init__(self, workers: Workers, limits: ImageLimits) -> None:
        self.workers = workers
        self.limits = limits
        self.budget = PixelBudget()

    async def decode(self, data: bytes) -> Decoded:
        """Raises `bot.images.decode.ImageError` with a reason a user can read."""
        return await self.workers.run("prep", self._decode, data)

    async def open_file(self, path: str | os.PathLike[str]) -> Frames:
        return await self.workers.run(
            "prep", load_image_file, path, self.limits, budget=self.budget
        )

    def _decode(self, data: bytes) -> Decoded:
        frames = load_frames(data, self.limits, budget=self.budget)
        return Decoded(hashlib.sha256(data).hexdigest(), frames.caption, frames.embedded)


def limits_from(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        max_aspect_ratio=settings.max_aspect_ratio,
    )
