"""Photo-like test pictures: smooth gradients, shapes, sensor-like noise and blur."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Something photo-like: gradients, shapes, texture and blur."""
    rng = random.Random(seed)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    base = (x * rng.uniform(60, 200) + y * rng.uniform(60, 200)) * np.array(
        [1.0, 0.8, 0.6], np.float32
    )
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        box = (
            x0,
            y0,
            x0 + rng.randrange(4, max(5, width // 2)),
            y0 + rng.randrange(4, max(5, height // 2)),
        )
        draw.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return image.filter(ImageFilter.GaussianBlur(1.5))


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
