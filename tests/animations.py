"""Animated test images: frames of `tests.shapes` saved as GIF, APNG or animated WebP."""

from __future__ import annotations

import io
import random

from PIL import Image

from tests.shapes import draw_shape


def animation(pictures: list[Image.Image], fmt: str) -> bytes:
    buffer = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    first, *rest = pictures
    first.save(buffer, fmt, save_all=True, append_images=rest, duration=40, loop=0, **extra)
    return buffer.getvalue()


def gif_with_a_blank_start() -> tuple[bytes, str, str]:
    """White, then 7 shapes; with the captions of its first shape and of its last embedded
    frame (4 are embedded, spread over frames 1-7: frames 1, 2, 4 and 6)."""
    order = [("red", "circle"), ("blue", "square"), ("yellow", "circle"), ("blue", "circle"),
             ("red", "square"), ("green", "triangle"), ("yellow", "square")]  # fmt: skip
    white = Image.new("RGB", (160, 160), (255, 255, 255))
    frames = [white] + [draw_shape(random.Random(i), c, s, 160) for i, (c, s) in enumerate(order)]
    return animation(frames, "GIF"), "a red circle", "a green triangle"
