"""Decompression bombs: the refusal of one, with the size its header declares and the limit,
and the JPEG whose cost is in its number of scans rather than its size.

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


# A progressive JPEG is decoded in scans, each a pass of libjpeg over every block of the picture
# whatever the reduced size asked for: a 319 KB file of 8,000 tiny scans of a 4000 x 4000 grey
# picture held a decoding thread for 6.9 s (2-core AMD EPYC), and the time grows with the file.
# Encoders write about ten; libjpeg-turbo's own tools refuse more than 100 when asked to guard.
MAX_JPEG_SCANS = 100
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # not stuffing, not a restart


def jpeg_scans(data: bytes, stop_after: int = MAX_JPEG_SCANS) -> int:
    """The start-of-scan markers of a JPEG's own stream (an embedded thumbnail's are inside
    its APP segment and skipped), counted up to `stop_after` + 1."""
    scans, pos, end = 0, 2, len(data)  # after SOI
    while pos + 4 <= end and scans <= stop_after:
        if data[pos] != 0xFF:  # stray bytes: libjpeg skips them to the next marker, so do we
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before the marker
            pos += 1
            continue
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2  # stuffing, TEM and restarts have no length: libjpeg reads none
            continue
        if marker == 0xD9:  # end of image
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            scans += 1
            found = _MARKER_AFTER_SCAN.search(data, pos)  # the scan's data ends at a marker
            if found is None:
                break
            pos = found.start()
    return scans
