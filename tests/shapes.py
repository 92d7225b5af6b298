"""Synthetic test images: one filled shape in one colour on a light grey background.

The tiny fixture models in ``tests/fixtures/models`` were trained on exactly these images
(see ``tests/fixtures/make_tiny_models.py``), so tests can draw fresh images with
:func:`draw_shape` or :func:`random_sample` and expect the caption :func:`caption_of` returns.

Everything is driven by the ``random.Random`` passed in, so a seeded generator always draws
the same images.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 30),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

CLASSES: list[tuple[str, str]] = [(colour, shape) for colour in COLOURS for shape in SHAPES]

COLOUR_JITTER = 20
BACKGROUND_RANGE = (200, 255)
NOISE_AMPLITUDE = 15
SHAPE_FRACTION = (0.30, 0.70)


def caption_of(colour: str, shape: str) -> str:
    """The caption the models were trained to produce for this class."""
    return f"a {colour} {shape}"


def _clamp(value: int) -> int:
    return max(0, min(255, value))


def draw_shape(
    rng: random.Random,
    colour: str,
    shape: str,
    size: int,
    noise: bool | None = None,
) -> Image.Image:
    """Draw one filled ``shape`` in ``colour`` on a ``size`` x ``size`` RGB image.

    The shape's bounding box is a square whose side is 30-70% of the image side, placed
    anywhere fully inside the image. Circles fill the box, squares are the box, triangles point
    up with their apex at the top centre of the box. The colour is the base colour with each
    channel jittered by up to +-20. The background is a uniform grey level between 200 and 255,
    with per-pixel noise of up to +-15 per channel when ``noise`` is true (``None``: random).
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}")
    if size < 8:
        raise ValueError("size must be at least 8 pixels")
    if noise is None:
        noise = rng.random() < 0.5

    grey = rng.randint(*BACKGROUND_RANGE)
    if noise:
        np_rng = np.random.default_rng(rng.getrandbits(64))
        offsets = np_rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=(size, size, 3))
        background = np.clip(grey + offsets, 0, 255).astype(np.uint8)
        image = Image.fromarray(background, "RGB")
    else:
        image = Image.new("RGB", (size, size), (grey, grey, grey))

    low, high = SHAPE_FRACTION
    side = max(3, round(size * rng.uniform(low, high)))
    x0 = rng.randint(0, size - side)
    y0 = rng.randint(0, size - side)
    x1 = x0 + side - 1
    y1 = y0 + side - 1
    fill = tuple(_clamp(c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER)) for c in COLOURS[colour])

    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=fill)
    return image


def random_sample(rng: random.Random, size: int) -> tuple[Image.Image, str]:
    """Draw a random class; return ``(image, caption)``."""
    colour, shape = rng.choice(CLASSES)
    return draw_shape(rng, colour, shape, size), caption_of(colour, shape)
