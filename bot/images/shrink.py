"""Reducing a decoded image at once to what the models need, whatever its format."""

from __future__ import annotations

from PIL import Image

# Modes that resample directly; 16-bit grey as 32-bit, and others are made 8-bit first, later.
_RESAMPLES = {"RGB", "RGBA", "L", "LA", "CMYK", "YCbCr", "I", "F"}


def shrink(img: Image.Image, draft_size: int | None) -> Image.Image:
    """The image with no side longer than twice `draft_size` (None: as it is)."""
    if draft_size is None or max(img.size) <= 2 * draft_size:
        return img
    limit = 2 * draft_size
    if img.mode in ("P", "PA", "1"):
        # Palette entries cannot be averaged: thin the pixels to twice the target first (cheap,
        # still paletted), then resample real colours.
        factor = max(img.size) / (2 * limit)
        if factor > 1:
            size = (max(1, round(img.width / factor)), max(1, round(img.height / factor)))
            img = img.resize(size, Image.Resampling.NEAREST)
        img = img.convert("RGBA")
    elif img.mode.startswith("I;16"):
        # 16-bit grey (a PNG's): resampled as 32-bit, so that it is made 8-bit at its small
        # size (a 10 KB file of 2000 x 2000 was otherwise converted whole, outside the budget).
        img = img.convert("I")
    elif img.mode not in _RESAMPLES:
        return img
    small = img.copy() if img.readonly else img
    small.thumbnail((limit, limit), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return small
