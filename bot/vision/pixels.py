"""Fast pixel preprocessing, equivalent to the checkpoints' own image processors.

transformers' PIL image processors convert between PIL and numpy several times and work in
float64; for a 384x384 BLIP input that is ~30 ms a picture on a small CPU, as much as a batched
CLIP forward pass. This does the same steps (resize with the processor's filter, optional
centre crop, rescale, normalise) with one PIL resize and one float32 numpy pass. The result
is the reference tensor up to float32 rounding (tests/test_pixels.py); the JPEG draft decoding in
`bot.images.decode` is what moves pixels, within a mean absolute difference of 0.02.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class PixelPipeline:
    size: tuple[int, int] | int  # (height, width), or the shortest edge
    crop: tuple[int, int] | None  # (height, width) centre crop, after the resize
    resample: Image.Resampling
    scale: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_processor(cls, processor: Any) -> PixelPipeline:
        """Reads the same settings the checkpoint's image processor uses."""
        size = processor.size
        target: tuple[int, int] | int = (
            int(size["shortest_edge"])
            if "shortest_edge" in size
            else (int(size["height"]), int(size["width"]))
        )
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop = (int(processor.crop_size["height"]), int(processor.crop_size["width"]))
        mean = np.asarray(processor.image_mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(processor.image_std, np.float32).reshape(3, 1, 1)
        scale = float(processor.rescale_factor) if processor.do_rescale else 1.0
        if not processor.do_normalize:
            mean, std = np.zeros_like(mean), np.ones_like(std)
        return cls(target, crop, Image.Resampling(int(processor.resample)), scale, mean, std)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.one(image) for image in images]))

    def one(self, image: Image.Image) -> np.ndarray:
        image = image.convert("RGB") if image.mode != "RGB" else image
        resized = image.resize(self._resize_to(image.size), self.resample)
        if self.crop is not None:
            resized = _centre_crop(resized, self.crop)
        pixels = np.asarray(resized, np.float32).transpose(2, 0, 1)
        result: np.ndarray = (pixels * np.float32(self.scale) - self.mean) / self.std
        return result

    def _resize_to(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) for PIL, computed as transformers computes it."""
        if not isinstance(self.size, int):
            return self.size[1], self.size[0]
        width, height = size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.size, int(self.size * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)


def _centre_crop(image: Image.Image, crop: tuple[int, int]) -> Image.Image:
    height, width = crop
    top = (image.height - height) // 2
    left = (image.width - width) // 2
    return image.crop((left, top, left + width, top + height))
