"""Files padded with metadata that Pillow reads item by item (bot/images/floods.py), and the
metadata of a decoded picture, which is not kept."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image, PngImagePlugin

from bot import wording
from bot.images.decode import ImageError, ImageLimits, load_frames
from bot.images.floods import MAX_ITEMS, RLE_MAX_BYTES, RLE_MAX_PIXELS, is_flooded
from tests.image_corpus import build_corpus

LIMITS = ImageLimits(max_bytes=25 * 1024 * 1024)
ITEMS = MAX_ITEMS + 50


def encoded(fmt: str, size: tuple[int, int] = (16, 16), **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, fmt, **params)
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def jpeg_with_empty_segments(count: int) -> bytes:
    jpeg = encoded("JPEG")
    return jpeg[:2] + b"\xff\xe5\x00\x02" * count + jpeg[2:]


def png_with_private_chunks(count: int) -> bytes:
    png = encoded("PNG")
    after_header = 8 + 25  # the signature, then IHDR
    return png[:after_header] + chunk(b"aaAa", b"") * count + png[after_header:]


def png_with_empty_data_chunks(count: int) -> bytes:
    png = encoded("PNG")
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk(b"IDAT", b"") * count + png[iend:]


def gif_with_a_long_comment(sub_blocks: int) -> bytes:
    gif = encoded("GIF")
    after_screen = 13 + 3 * (2 << (gif[10] & 7)) if gif[10] & 0x80 else 13
    comment = b"\x21\xfe" + b"\x01x" * sub_blocks + b"\x00"
    return gif[:after_screen] + comment + gif[after_screen:]


def gif_of_frames(count: int) -> bytes:
    """`count` frames of 1 x 1 pixel, a few bytes each."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame * count + b"\x3b"


FLOODS = {
    "jpeg segments": jpeg_with_empty_segments(ITEMS),
    "jpeg stray bytes": b"\xff\xd8" + b"\x00" * ITEMS + encoded("JPEG")[2:],
    "png chunks": png_with_private_chunks(ITEMS),
    "png empty data chunks": png_with_empty_data_chunks(ITEMS + MAX_ITEMS),
    "gif comment": gif_with_a_long_comment(ITEMS + MAX_ITEMS),  # two bytes each
    "gif frames": gif_of_frames(ITEMS),
    "gif data in 1-byte sub-blocks": gif_of_frames(1)[:-4]
    + b"\x01\x00" * (ITEMS + 4 * MAX_ITEMS)
    + b"\x00\x3b",
}


@pytest.mark.parametrize("name", sorted(FLOODS))
def test_a_file_flooded_with_metadata_is_refused_before_pillow_reads_it(name: str) -> None:
    data = FLOODS[name]
    started = time.perf_counter()
    with pytest.raises(ImageError) as refused:
        load_frames(data, LIMITS)
    assert refused.value.code == "bomb"
    assert "metadata" in refused.value.reason
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "data",
    [
        jpeg_with_empty_segments(MAX_ITEMS // 2),
        png_with_private_chunks(MAX_ITEMS // 2),
        gif_with_a_long_comment(MAX_ITEMS // 2),
        gif_of_frames(500),
    ],
    ids=["jpeg", "png", "gif comment", "gif frames"],
)
def test_a_file_under_the_bound_still_decodes(data: bytes) -> None:
    assert not is_flooded(data)
    assert load_frames(data, LIMITS).caption.size[0] >= 1


def test_a_large_png_in_many_data_chunks_is_not_a_flood() -> None:
    """MAX_IMAGE_BYTES may be raised far past its 25 MB: a 200 MB PNG in libpng's 8 KB chunks
    has 25,000 of them. The same count at 2 KB each (50 MB, header only: nothing decoded)."""
    png = encoded("PNG")
    iend = png.rindex(b"IEND") - 4
    start = png.index(b"IDAT") - 4
    data = png[:start] + chunk(b"IDAT", bytes(2048)) * 25_000 + png[iend:]
    assert not is_flooded(data)
    assert is_flooded(png[:start] + chunk(b"IDAT", bytes(1024)) * 50_000 + png[iend:])


def test_no_image_of_the_corpus_counts_as_flooded() -> None:
    """Real encoders' files, large ones and animations of hundreds of frames included."""
    corpus = build_corpus(LIMITS.max_bytes)
    assert not [item.name for item in corpus if is_flooded(item.data)]


def test_a_gif_with_a_large_xmp_packet_is_not_a_flood() -> None:
    """XMP in a GIF is raw text in an application extension, each byte of which reads as a
    sub-block's length, ended by a "magic trailer" (XMP Specification Part 3, 1.1.2): a history
    of 2 MB reads as about 25,000 sub-blocks."""
    gif = encoded("GIF")
    after_screen = 13 + 3 * (2 << (gif[10] & 7)) if gif[10] & 0x80 else 13
    packet = b"<rdf:li>xmp.did:0123456789abcdef0123456789</rdf:li>\n" * 40_000
    trailer = b"\x01" + bytes(range(255, -1, -1)) + b"\x00"
    xmp = b"\x21\xff\x0bXMP DataXMP" + packet + trailer
    data = gif[:after_screen] + xmp + gif[after_screen:]
    assert not is_flooded(data)
    assert load_frames(data, LIMITS).caption.size == (16, 16)


def test_a_big_gif_of_full_sub_blocks_is_walked_quickly() -> None:
    """Picture data as encoders write it, 255 bytes a sub-block: 20 MB are not a flood."""
    data = gif_of_frames(1)[:-4] + (b"\xff" + b"\x00" * 255) * 80_000 + b"\x00\x3b"
    started = time.perf_counter()
    assert not is_flooded(data)
    assert time.perf_counter() - started < 0.5


def test_a_decoded_picture_keeps_none_of_the_files_metadata() -> None:
    """Decoded pictures are cached for a while (bot/images/fetcher.py): a 1 KB PNG can carry
    a megabyte of compressed text, a GIF a long comment."""
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "x" * 1_000_000, zip=True)
    png = encoded("PNG", pnginfo=text)
    gif = gif_with_a_long_comment(5_000)
    for data in (png, gif, encoded("JPEG", exif=Image.Exif())):
        frames = load_frames(data, LIMITS)
        assert frames.caption.info == {}
        assert all(frame.info == {} for frame in frames.embedded)


def rle_bmp(width: int, height: int, bits: int, codes: bytes) -> bytes:
    """A BMP whose picture is run-length compressed (RLE8 with 8 bits, RLE4 with 4), grey."""
    palette = b"".join(bytes((i * 17 % 256,) * 3 + (0,)) for i in range(1 << bits))
    offset = 14 + 40 + len(palette)
    compression = 2 if bits == 4 else 1
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(codes), 2835, 2835, 0, 0
    )
    return b"BM" + struct.pack("<IHHI", offset + len(codes), 0, 0, offset) + info + palette + codes


def rows_of_runs(width: int, height: int, colour: int) -> bytes:
    row = b"".join(bytes((min(254, width - x), colour)) for x in range(0, width, 254))
    return (row + b"\x00\x00") * height + b"\x00\x01"  # each row ended, then the picture


def test_run_length_compressed_bmps_are_bounded_before_pillow_decodes_them_in_python() -> None:
    refusal = wording.slow_bmp(RLE_MAX_PIXELS, RLE_MAX_BYTES)
    hostile = {
        "4-bit runs, 4000 x 4000": rle_bmp(4000, 4000, 4, rows_of_runs(4000, 4000, 0x12)),
        "early ends of line": rle_bmp(4000, -4000, 8, b"\x01\x00\x00\x00" * 4000 + b"\x00\x01"),
        "a flood of codes": rle_bmp(16, 16, 8, b"\x00\x00" * RLE_MAX_BYTES + b"\x00\x01"),
    }
    for name, data in hostile.items():
        started = time.perf_counter()
        with pytest.raises(ImageError) as refused:
            load_frames(data, LIMITS)
        assert refused.value.code == "bomb" and str(refused.value) == refusal, name
        assert time.perf_counter() - started < 0.2, name
    # A picture within the bounds still decodes, top-down or bottom-up, either kind.
    for bits, height, entry in ((8, 300, 0x33), (4, -300, 3)):  # RLE4: two pixels of 3
        data = rle_bmp(400, height, bits, rows_of_runs(400, 300, 0x33))
        frame = load_frames(data, LIMITS, draft_size=None).caption
        assert frame.size == (400, 300)
        assert frame.getpixel((200, 150)) == (entry * 17 % 256,) * 3
