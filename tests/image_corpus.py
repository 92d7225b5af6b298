"""A corpus of good and hostile image files for the loader's tests, built here, never downloaded.

Every item carries the outcome `bot.images.decode.load_image` must give it with
``ImageLimits(max_bytes=<the max_bytes the corpus was built for>)``: ``"ok"`` or an ImageError
code. Bombs are written chunk by chunk, so building the corpus never allocates their pixels.
"""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, features

SEED = 20240611
DEFAULT_MAX_BYTES = 1_048_576

# Colours the tests look for after decoding.
MARKER = (230, 20, 20)  # top-left of the displayed orientation image
MARKER2 = (20, 20, 230)  # top-right, so a mirror is told apart from a rotation
BACKGROUND = (250, 250, 250)
FIRST_FRAME = (255, 0, 0)
ORIENT_SIZE = (64, 48)  # displayed width x height; rotated orientations store it as 48 x 64
LARGE_JPEG_SIZE = (4000, 3000)
GREY16 = 32768  # mid-grey in a 16-bit PNG

# exif_transpose undoes these; the stored pixels are the displayed image with this applied.
_STORE_TRANSFORM: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class CorpusItem:
    name: str  # unique slug
    filename: str  # the name an uploader claims, possibly hostile; never used on disk
    data: bytes
    content_type: str | None
    expected: str  # "ok" or an ImageError code

    @property
    def disk_name(self) -> str:
        """Safe on-disk name: the slug plus the claimed extension, if it is a plain one."""
        suffix = Path(self.filename).suffix.lower()
        return self.name + (suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin")


# ---------------------------------------------------------------- encoders


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_ihdr(width: int, height: int, depth: int = 1, colour_type: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of any size, built without ever holding its pixels.

    One block of rows is deflated once and ended with a full flush, which drops the history,
    so the compressed block can be repeated as is; only the Adler-32 sees every byte.
    """
    row = b"\x00" * (1 + (width + 7) // 8)
    rows_per_block = max(1, min(height, (4 << 20) // len(row)))
    blocks, rest = divmod(height, rows_per_block)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = row * rows_per_block
    packed = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(block, adler)
    tail = row * rest
    adler = zlib.adler32(tail, adler)
    final = zlib.compressobj(9, zlib.DEFLATED, -15)
    ending = final.compress(tail) + final.flush()
    stream = b"\x78\xda" + packed * blocks + ending + struct.pack(">I", adler)
    return _png_ihdr(width, height) + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b"")


def gif_bomb(width: int = 65535, height: int = 65535, frame_size: int = 1) -> bytes:
    """A GIF whose logical screen is huge and whose only frame is one pixel."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(3) + b"\xff" * 3
    frame = b"," + struct.pack("<HHHHB", 0, 0, frame_size, frame_size, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b";"


def _riff_webp(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _vp8l_chunk(width: int, height: int) -> bytes:
    # A lossless header and a few bytes of body: enough for the demuxer, never decoded.
    bits = (width - 1) | ((height - 1) << 14)
    body = b"\x2f" + struct.pack("<I", bits) + bytes(15)
    return b"VP8L" + struct.pack("<I", len(body)) + body


def webp_vp8l_bomb() -> bytes:
    """The largest canvas a VP8L header can declare: 16384 x 16384."""
    return _riff_webp(_vp8l_chunk(16384, 16384))


def webp_vp8x_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """An extended-format canvas far beyond the limits, around a one-pixel image."""
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + canvas
    return _riff_webp(vp8x + _vp8l_chunk(1, 1))


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def _jpeg_header_bomb() -> bytes:
    """A real JPEG whose frame header claims 60000 x 60000, cut off after the header."""
    data = bytearray(_save(Image.new("RGB", (8, 8), MARKER), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data[: data.index(b"\xff\xda") + 20])


def _huge_header_truncated_png() -> bytes:
    """9000 x 9000 declared (over 50 MP, under Pillow's bomb limit), then the body stops."""
    idat = zlib.compress(b"\x00" * 2000)
    return _png_ihdr(9000, 9000, 8, 0) + _png_chunk(b"IDAT", idat)[:-4]


# ---------------------------------------------------------------- good images


def _orientation_jpeg(orientation: int) -> bytes:
    displayed = Image.new("RGB", ORIENT_SIZE, BACKGROUND)
    displayed.paste(MARKER, (0, 0, 16, 16))
    displayed.paste(MARKER2, (ORIENT_SIZE[0] - 16, 0, ORIENT_SIZE[0], 16))
    method = _STORE_TRANSFORM[orientation]
    stored = displayed if method is None else displayed.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(stored, "JPEG", quality=95, exif=exif.tobytes())


def _noise(size: tuple[int, int], rng: random.Random) -> Image.Image:
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def _large_jpeg() -> bytes:
    gradient = Image.linear_gradient("L").resize(LARGE_JPEG_SIZE)
    img = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient))
    return _save(img, "JPEG", quality=80)


def _animated_gif(frames: int = 500) -> bytes:
    first = Image.new("P", (8, 8), 0)
    first.putpalette([*FIRST_FRAME, 0, 255, 0, 0, 0, 255])
    rest = [Image.new("P", (8, 8), 1 + i % 2) for i in range(frames - 1)]
    for frame in rest:
        frame.putpalette([*FIRST_FRAME, 0, 255, 0, 0, 0, 255])
    return _save(first, "GIF", save_all=True, append_images=rest, duration=20, loop=0)


def _animated_webp() -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in (FIRST_FRAME, (0, 255, 0), (0, 0, 255))]
    return _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)


def _palette_transparent_png() -> bytes:
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, *MARKER])
    img.paste(1, (0, 0, 8, 16))
    return _save(img, "PNG", transparency=0)  # right half: transparent black


def _half_transparent(mode: str) -> bytes:
    img = Image.new(mode, (16, 16), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    img.paste((*MARKER, 255) if mode == "RGBA" else (60, 255), (0, 0, 8, 16))
    return _save(img, "PNG")


def _png16() -> bytes:
    return _save(Image.new("I;16", (32, 32), GREY16), "PNG")


# ---------------------------------------------------------------- the corpus


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def build_corpus(max_bytes: int = DEFAULT_MAX_BYTES) -> list[CorpusItem]:
    """Every item, in a fixed order; `max_bytes` sizes the one that is too large."""
    rng = random.Random(SEED)
    photo = _noise((160, 120), rng)
    small_png = _save(Image.new("RGB", (24, 24), MARKER), "PNG")
    jpeg = _save(photo, "JPEG", quality=90)
    items: list[tuple[str, str, bytes | Callable[[], bytes], str | None, str]] = [
        # hostile: size and dimension limits
        ("empty", "empty.png", b"", "image/png", "empty"),
        (
            "too_large",
            "huge.jpg",
            jpeg + bytes(max_bytes + 1 - len(jpeg)),
            "image/jpeg",
            "too_large",
        ),
        ("bomb_png", "bomb.png", lambda: png_bomb(30000, 30000), "image/png", "bomb"),
        ("bomb_png_warning", "bomb2.png", lambda: png_bomb(12000, 12000), "image/png", "bomb"),
        ("bomb_gif", "bomb.gif", gif_bomb, "image/gif", "bomb"),
        ("bomb_webp_vp8l", "bomb.webp", webp_vp8l_bomb, "image/webp", "bomb"),
        ("bomb_webp_vp8x", "bomb2.webp", webp_vp8x_bomb, "image/webp", "bomb"),
        ("bomb_jpeg_header", "bomb.jpg", _jpeg_header_bomb, "image/jpeg", "bomb"),
        ("huge_header_truncated", "big.png", _huge_header_truncated_png, None, "too_many_pixels"),
        (
            "aspect_ratio",
            "strip.png",
            lambda: _save(Image.new("L", (10000, 10)), "PNG"),
            "image/png",
            "aspect_ratio",
        ),
        # hostile: broken images
        ("truncated_jpeg", "cut.jpg", lambda: _truncated(jpeg), "image/jpeg", "truncated"),
        (
            "truncated_png",
            "cut.png",
            lambda: _truncated(_save(photo, "PNG")),
            "image/png",
            "truncated",
        ),
        (
            "truncated_webp",
            "cut.webp",
            lambda: _truncated(_save(photo, "WEBP")),
            "image/webp",
            "truncated",
        ),
        (
            "zero_width_gif",
            "zero.gif",
            lambda: gif_bomb(0, 0, frame_size=0),
            "image/gif",
            "corrupt",
        ),
        (
            "png_bad_crc",
            "crc.png",
            lambda: small_png[:30] + bytes([small_png[30] ^ 0xFF]) + small_png[31:],
            "image/png",
            "corrupt",
        ),
        # hostile: not images, or not ours
        ("garbage_jpg", "random.jpg", lambda: rng.randbytes(4096), "image/jpeg", "not_image"),
        (
            "svg",
            "drawing.svg",
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
            b'width="10" height="10"><rect width="10" height="10"/></svg>\n',
            "image/svg+xml",
            "not_image",
        ),
        (
            "pdf",
            "scan.pdf",
            b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
            "application/pdf",
            "not_image",
        ),
        (
            "html",
            "index.png",
            b"<!DOCTYPE html>\n<html><body>hi</body></html>\n",
            "text/html",
            "not_image",
        ),
        (
            "text",
            "notes.txt",
            "shopping list: eggs, milk, café\n".encode() * 20,
            "text/plain",
            "not_image",
        ),
        (
            "elf_as_png",
            "cat.png",
            b"\x7fELF\x02\x01\x01" + bytes(57) + rng.randbytes(256),
            "image/png",
            "not_image",
        ),
        (
            "pe_as_png",
            "dog.png",
            b"MZ\x90\x00" + bytes(56) + b"PE\x00\x00" + rng.randbytes(256),
            "image/png",
            "not_image",
        ),
        ("zip", "photos.zip", lambda: _zip_bytes(small_png), "application/zip", "not_image"),
        ("tiff", "scan.tiff", lambda: _save(photo, "TIFF"), "image/tiff", "unsupported_format"),
        (
            "ico",
            "favicon.ico",
            lambda: _save(Image.new("RGB", (16, 16), MARKER), "ICO"),
            "image/x-icon",
            "unsupported_format",
        ),
        (
            "heic",
            "IMG_0001.HEIC",
            _ftyp(b"heic", b"mif1heic"),
            "image/heic",
            "unsupported_format",
        ),
        (
            "heic_mif1",  # a phone's HEIC: `heic` only among the compatible brands
            "IMG_0002.HEIC",
            _ftyp(b"mif1", b"mif1heicmiaf"),
            "image/heic",
            "unsupported_format",
        ),
        (
            "mp4",
            "clip.mp4",
            _ftyp(b"isom", b"isomiso2avc1mp41"),
            "video/mp4",
            "not_image",
        ),
        (
            "mov",
            "IMG_0003.MOV",
            _ftyp(b"qt  ", b"qt  "),
            "video/quicktime",
            "not_image",
        ),
        (
            "m4a",
            "voice.m4a",
            _ftyp(b"M4A ", b"M4A mp42isom"),
            "audio/mp4",
            "not_image",
        ),
        ("wav", "memo.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64), "audio/wav", "not_image"),
        (
            "avi",
            "old.avi",
            b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(64),
            "video/x-msvideo",
            "not_image",
        ),
        # good
        ("jpeg", "photo.jpg", jpeg, "image/jpeg", "ok"),
        (
            "jpeg_corrupt_exif",
            "exif.jpg",
            lambda: _jpeg_with_app1(jpeg, b"Exif\x00\x00MM\x00*" + b"\xff" * 40),
            "image/jpeg",
            "ok",
        ),
        *[
            (
                f"orientation_{n}",
                f"orient{n}.jpg",
                (lambda n=n: _orientation_jpeg(n)),
                "image/jpeg",
                "ok",
            )
            for n in range(1, 9)
        ],
        (
            "jpeg_cmyk",
            "print.jpg",
            lambda: _save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"),
            "image/jpeg",
            "ok",
        ),
        ("jpeg_grey", "grey.jpg", lambda: _save(photo.convert("L"), "JPEG"), "image/jpeg", "ok"),
        (
            "jpeg_progressive",
            "prog.jpg",
            lambda: _save(photo, "JPEG", progressive=True),
            "image/jpeg",
            "ok",
        ),
        ("jpeg_large", "large.jpg", _large_jpeg, "image/jpeg", "ok"),
        ("png_16bit", "deep.png", _png16, "image/png", "ok"),
        ("png_palette_transparent", "pal.png", _palette_transparent_png, "image/png", "ok"),
        ("png_rgba", "rgba.png", lambda: _half_transparent("RGBA"), "image/png", "ok"),
        ("png_la", "la.png", lambda: _half_transparent("LA"), "image/png", "ok"),
        (
            "png_1x1",
            "dot.png",
            lambda: _save(Image.new("RGB", (1, 1), MARKER), "PNG"),
            "image/png",
            "ok",
        ),
        ("gif_animated_500", "anim.gif", _animated_gif, "image/gif", "ok"),
        ("webp_animated", "anim.webp", _animated_webp, "image/webp", "ok"),
        ("webp", "photo.webp", lambda: _save(photo, "WEBP"), "image/webp", "ok"),
        ("mismatch", "photo.gif", small_png, "image/jpeg", "ok"),
        ("path_traversal", "../../etc/passwd.png", small_png, "image/png", "ok"),
        ("bmp", "old.bmp", lambda: _save(photo, "BMP"), "image/bmp", "ok"),
    ]
    if features.check("avif"):
        items.append(
            ("avif", "photo.avif", lambda: _save(photo, "AVIF", quality=60), "image/avif", "ok")
        )
    return [
        CorpusItem(name, filename, data if isinstance(data, bytes) else data(), ctype, expected)
        for name, filename, data, ctype, expected in items
    ]


def _ftyp(major: bytes, compatible: bytes) -> bytes:
    """The head of an ISO media file (MP4, MOV, HEIC...): its `ftyp` box, a major brand, a
    version and the compatible brands (ISO/IEC 14496-12, 4.3), then nothing of use."""
    box = b"ftyp" + major + bytes(4) + compatible
    return (4 + len(box)).to_bytes(4, "big") + box + bytes(64)


def _zip_bytes(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.png", payload)
    return buf.getvalue()


def write_corpus(directory: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[CorpusItem]:
    """Write every item to `directory` under its safe `disk_name`; returns the items."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    items = build_corpus(max_bytes)
    for item in items:
        (root / item.disk_name).write_bytes(item.data)
    return items
