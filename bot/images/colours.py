"""Making any decoded picture plain RGB: turned upright, 8-bit, transparency onto white."""

from __future__ import annotations

import logging

from PIL import Image, ImageOps

from bot import wording
from bot.images.errors import ImageError

log = logging.getLogger(__name__)


def exif_transpose(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:
        # A phone's damaged EXIF block must not cost the user a perfectly good picture.
        log.debug("ignoring unreadable EXIF: %r", exc)
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        # Pillow clips 16-bit values straight to 8 bits, which turns most images white.
        img = img.convert("I").point(lambda v: v / 256).convert("L")
        img.info.pop("transparency", None)  # a 16-bit key colour means nothing in 8 bits
    elif mode == "F":
        img = img.convert("L")
    if "A" in img.getbands() or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError:
        raise ImageError("unsupported_format", wording.colour_mode_refused(mode)) from None
