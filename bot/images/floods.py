"""Files padded with metadata: thousands of items that Pillow reads one at a time, in Python,
while it opens the file, before any of our checks on the picture can run.

Measured on a 2-core AMD EPYC, each file 25 MB around a picture of 16 x 16 pixels: empty JPEG
APP segments took 14 s and 830 MB to open (Pillow keeps each one), empty private PNG chunks
13 s, a GIF comment of one-byte sub-blocks 5 s and 1 GB, and a GIF of 1.7 million tiny frames
5 s to count its frames. An encoder writes tens of such items; an animation has a few per frame.
Run-length compressed BMPs are bounded here too: Pillow decodes their picture in Python.
"""

from __future__ import annotations

from bot import wording

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Items Pillow reads one by one: a JPEG's segments and stray bytes before its first scan, a
# PNG's chunks, a GIF's extension sub-blocks and frames. Up to this many cost tens of
# milliseconds; an APNG or a GIF of this many frames is refused too.
MAX_ITEMS = 20_000
# Items whose number grows with a file's size count against MAX_ITEMS plus one per so many
# bytes. A PNG's picture data comes in chunks of 8 KB or more (libpng's default), each read in
# Python; MAX_IMAGE_BYTES may be raised far past its 25 MB. A GIF's sub-blocks, its picture's
# and its extensions', are filled to 255 bytes by encoders, except an XMP packet's, where each
# byte of text reads as a sub-block's length (about one per 80 bytes); Pillow reads each in
# Python, but cheaply (0.4 us and 34 bytes apiece against a JPEG segment's 2.3 us and 133).
PNG_DATA_BYTES_PER_CHUNK = 2048
GIF_BYTES_PER_SUB_BLOCK = 64
# A run-length compressed BMP (RLE8, RLE4) is decoded by Pillow in Python: per pixel where runs
# of 4-bit pixels or an early end of line fill it (a 17 KB file of 4000 x 4000 took 2.7 s), and
# per two bytes of codes (a 1 MB file of ends of line around 16 x 16 pixels took 0.24 s). Within
# these bounds it takes about a big PNG's time; encoders write RLE only for small pictures.
RLE_MAX_PIXELS = 2_000_000
RLE_MAX_BYTES = 1024 * 1024


def flood_refusal(data: bytes) -> str | None:
    """Why the file is refused before Pillow opens it (see the module's docstring), or None."""
    if is_flooded(data):
        return wording.metadata_flood(MAX_ITEMS)
    if _slow_bmp(data):
        return wording.slow_bmp(RLE_MAX_PIXELS, RLE_MAX_BYTES)
    return None


def is_flooded(data: bytes) -> bool:
    """Whether the file holds more items than its bound (only JPEG, PNG and GIF: libwebp and
    libavif read their own containers, in C, and a BMP has a fixed header, its RLE data aside:
    `_slow_bmp`)."""
    if data.startswith(b"\xff\xd8"):
        return _jpeg_items(data) > MAX_ITEMS
    if data.startswith(PNG_SIGNATURE):
        return _png_flooded(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_flooded(data)
    return False


def _slow_bmp(data: bytes) -> bool:
    """A run-length compressed BMP past RLE_MAX_PIXELS or RLE_MAX_BYTES. Its header: the file's
    (14 bytes), then the bitmap's, whose size says which; from 40 bytes on it has the width and
    height (signed: a negative height is top-down) and the compression (1 RLE8, 2 RLE4)."""
    if not data.startswith(b"BM") or len(data) < 34:
        return False
    if int.from_bytes(data[14:18], "little") < 40:  # OS/2's first header: never compressed
        return False
    if int.from_bytes(data[30:34], "little") not in (1, 2):
        return False
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)
    return abs(width) * abs(height) > RLE_MAX_PIXELS or len(data) > RLE_MAX_BYTES


def _jpeg_items(data: bytes) -> int:
    """Segments, fill bytes and stray bytes up to the first scan (where Pillow stops reading
    and libjpeg goes on), counted up to MAX_ITEMS + 1."""
    items, pos, end = 0, 2, len(data)
    while pos + 4 <= end and items <= MAX_ITEMS:
        items += 1
        if data[pos] != 0xFF or data[pos + 1] in (0x00, 0xFF):
            pos += 1  # stray or fill bytes, or escaped data: Pillow reads them a byte at a time
            continue
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):  # the first scan, or the end
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return items


def _png_flooded(data: bytes) -> bool:
    """Too many chunks: Pillow reads each one's header in Python, the picture's data chunks
    (IDAT, and an animation's fdAT) included, as it decodes."""
    items = data_chunks = 0
    data_limit = MAX_ITEMS + len(data) // PNG_DATA_BYTES_PER_CHUNK
    pos, end = len(PNG_SIGNATURE), len(data)
    while pos + 8 <= end and items <= MAX_ITEMS and data_chunks <= data_limit:
        kind = data[pos + 4 : pos + 8]
        if kind == b"IEND":
            break
        if kind in (b"IDAT", b"fdAT"):
            data_chunks += 1
        else:
            items += 1
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return items > MAX_ITEMS or data_chunks > data_limit


def _gif_flooded(data: bytes) -> bool:
    """Walks the GIF's blocks: too many frames, or too many sub-blocks (its extensions' and
    its picture data's) for its size."""
    frames = sub_blocks = 0
    limit = MAX_ITEMS + len(data) // GIF_BYTES_PER_SUB_BLOCK
    pos = 13 + _colour_table(data[10] if len(data) > 10 else 0)
    end = len(data)
    while pos < end and frames <= MAX_ITEMS and sub_blocks <= limit:
        block = data[pos]
        if block == 0x21:  # an extension: its label, then its sub-blocks
            start = pos + 2
        elif block == 0x2C:  # a frame: its descriptor, colour table, code size, then its data
            frames += 1
            start = pos + 11 + _colour_table(data[pos + 9] if pos + 9 < end else 0)
        else:  # the trailer, or bytes Pillow stops at
            break
        pos, count = _sub_blocks(data, start, limit - sub_blocks)
        sub_blocks += count
    return frames > MAX_ITEMS or sub_blocks > limit


def _sub_blocks(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Where the run of sub-blocks at `pos` ends, and how many there are (counting stops
    past `limit`)."""
    count, end = 0, len(data)
    while pos < end and count <= limit:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
        count += 1
    return pos, count


def _colour_table(flags: int) -> int:
    """The bytes of the colour table that a descriptor's flags announce."""
    return 3 * (2 << (flags & 0x07)) if flags & 0x80 else 0
