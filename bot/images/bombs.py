"""The refusal of a decompression bomb, with the size its header declares and the limit.

Pillow refuses a bomb inside `Image.open`, before the size reaches the caller; without this the
refusal could name neither, while a slightly smaller image got both.
"""

from __future__ import annotations

import re
from io import BytesIO

from PIL import Image

from bot import wording


def bomb_refusal(data: bytes, error: Exception, max_pixels: int, formats: tuple[str, ...]) -> str:
    """The header is read again with the plugin alone (no bomb check, nothing decoded); where
    the plugin checks too (WebP), Pillow's message still gives the pixel count."""
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)  # whichever refused it
    size = _declared_size(data, formats)
    if size is not None:
        width, height = size
        return wording.too_large_to_open(width, height, width * height, limit)
    counted = re.search(r"\((\d+) pixels\)", str(error))
    if counted:
        return wording.too_large_to_open(None, None, int(counted.group(1)), limit)
    return wording.IMAGE_BOMB


def _declared_size(data: bytes, formats: tuple[str, ...]) -> tuple[int, int] | None:
    Image.init()
    for name in formats:
        factory, accept = Image.OPEN[name]
        if accept is not None and accept(data[:16]) is not True:
            continue
        try:
            with factory(BytesIO(data), "") as img:
                return img.size
        except Exception:  # a header only Pillow's own path gets through: no size to give
            return None
    return None
