"""Safe image decoding: hostile bytes in, a plain RGB picture or an ImageError out.

Only JPEGs are decoded at reduced size (libjpeg's draft mode); other formats decode in full,
within MAX_IMAGE_PIXELS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
from dataclasses import dataclass
from functools import partial
from io import BytesIO

from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError, features

from bot import wording
from bot.images.bombs import MAX_JPEG_SCANS, bomb_refusal, jpeg_scans
from bot.images.budget import PixelBudget
from bot.images.colours import exif_transpose, to_rgb
from bot.images.errors import DECODE_ERRORS, not_an_image, too_large
from bot.images.errors import ImageError as ImageError
from bot.images.floods import flood_refusal
from bot.images.frames import Frames, is_animated, read_animation
from bot.images.shrink import shrink
from bot.images.signatures import HEIC, file_kind

log = logging.getLogger(__name__)


def install_warning_filters() -> None:
    """Make Pillow's bomb warning an error, process-wide; idempotent, run once at import.

    Process-wide because catch_warnings per call is not thread-safe and loading runs in worker
    threads. Pillow warns between MAX_IMAGE_PIXELS and twice that, and raises above it.
    """
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    # Pillow warns about each damaged EXIF block it skips; with user uploads that is noise.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


install_warning_filters()

_KNOWN = {  # Pillow's name: (the name people know, file extensions)
    "JPEG": ("JPEG", ".jpg .jpeg .jfif"),
    "PNG": ("PNG", ".png"),
    "GIF": ("GIF", ".gif"),
    "WEBP": ("WebP", ".webp"),
    "BMP": ("BMP", ".bmp"),
    "AVIF": ("AVIF", ".avif"),
}
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP") + (
    ("AVIF",) if features.check("avif") else ()
)
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext for fmt in ALLOWED_FORMATS for ext in _KNOWN[fmt][1].split()
)
DRAFT_SIZE = 384  # the largest input any of our models needs (BLIP 384x384; CLIP 224)

_PEOPLE_NAMES = [_KNOWN[fmt][0] for fmt in ALLOWED_FORMATS]
_ALLOWED_TEXT = ", ".join(_PEOPLE_NAMES[:-1]) + " or " + _PEOPLE_NAMES[-1]

_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

_ALLOWED_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")


@dataclass(frozen=True)
class ImageLimits:
    """What we are willing to decode."""

    max_bytes: int = 26_214_400
    max_pixels: int = 50_000_000
    max_aspect_ratio: float = 20.0


def load_image(
    data: bytes,
    limits: ImageLimits = ImageLimits(),
    *,
    draft_size: int | None = DRAFT_SIZE,
    budget: PixelBudget | None = None,
) -> Image.Image:
    """The picture to caption: for an animation, its first frame that is not blank."""
    return load_frames(data, limits, draft_size=draft_size, budget=budget).caption


def load_frames(
    data: bytes,
    limits: ImageLimits = ImageLimits(),
    *,
    draft_size: int | None = DRAFT_SIZE,
    budget: PixelBudget | None = None,
) -> Frames:
    """Decode untrusted bytes into loaded RGB pictures (bot.images.frames), or raise ImageError.

    With a `draft_size`, each comes out no larger than twice that on its longer side, whatever
    its format, so caches and batches hold only small images; `budget` makes huge decodes take
    turns, since a PNG costs its full size while it decodes (an animation, one frame's)."""
    if not data:
        raise ImageError("empty", wording.EMPTY_FILE)
    if len(data) > limits.max_bytes:
        raise too_large(len(data), limits.max_bytes)
    _refuse_known_non_image(data)
    if (refusal := flood_refusal(data)) is not None:
        raise ImageError("bomb", refusal)
    try:
        with _open(data) as img:
            _check_header(img, limits)
            # A progressive JPEG holds its whole picture's coefficients while it decodes, at
            # any reduced size (7000 x 7000: 305 MB, against 30 for the same image baseline).
            # (an MPO, which Pillow names any JPEG with a multi-picture index, is one too)
            jpeg = isinstance(img, JpegImagePlugin.JpegImageFile)
            progressive = jpeg and bool(img.info.get("progressive"))
            if progressive and jpeg_scans(data) > MAX_JPEG_SCANS:
                raise ImageError("bomb", wording.too_many_scans(MAX_JPEG_SCANS))
            full = img.width * img.height
            _draft(img, draft_size)
            pixels = full if progressive else img.width * img.height
            with budget.hold(pixels) if budget else contextlib.nullcontext():
                small = _read(img, draft_size)
            return small if isinstance(small, Frames) else Frames.still(_finish(small, draft_size))
    except ImageError:
        raise  # already worded for the user (it is a ValueError, so keep it out of the next)
    except _BOMB_ERRORS as exc:
        log.debug("decompression bomb refused: %s", exc)
        refusal = bomb_refusal(data, exc, limits.max_pixels, ALLOWED_FORMATS)
        raise ImageError("bomb", refusal) from None
    except DECODE_ERRORS as exc:
        log.debug("image failed to decode: %r", exc)
        if _looks_truncated(data, exc):
            raise ImageError("truncated", wording.IMAGE_TRUNCATED, wording.FILE_TRUNCATED) from None
        raise ImageError("corrupt", wording.IMAGE_CORRUPT) from None


def _read(img: ImageFile.ImageFile, draft_size: int | None) -> Frames | Image.Image:
    """An animation's frames, or a still's picture shrunk (not yet finished). The full-size
    picture is closed unless it is what is given back (shrunk in place): its memory goes
    before the budget trims the freed and lets the next huge decode start."""
    if is_animated(img):
        frames = read_animation(img, partial(_finish, draft_size=draft_size))  # copies
        img.close()
        return frames
    img.seek(0)  # a JPEG's extra pictures (MPO) are not frames of an animation
    img.load()
    if (small := shrink(img, draft_size)) is not img:  # a palette's or 16-bit's: a new one
        img.close()
    return small


def _finish(img: Image.Image, draft_size: int | None) -> Image.Image:
    """Upright, RGB and small; 16-bit and float images resample only once made 8-bit. None of
    the file's metadata is kept (a 60 KB PNG's text chunks were 60 MB of `info`)."""
    picture = shrink(to_rgb(exif_transpose(shrink(img, draft_size))), draft_size)
    picture.info = {}
    return picture


def load_image_file(
    path: str | os.PathLike[str],
    limits: ImageLimits = ImageLimits(),
    *,
    draft_size: int | None = DRAFT_SIZE,
    budget: PixelBudget | None = None,
) -> Frames:
    """Load an image from disk (as `load_frames`), refusing an oversized file before reading
    any of it."""
    data = _read_file(path, limits)
    return load_frames(data, limits, draft_size=draft_size, budget=budget)


def _read_file(path: str | os.PathLike[str], limits: ImageLimits) -> bytes:
    """A file's bytes, refusing an oversized file before reading any of it."""
    try:
        size = os.stat(path).st_size
        if size > limits.max_bytes:
            raise too_large(size, limits.max_bytes)
        with open(path, "rb") as fh:
            # Read one byte past the limit: st_size can lie (pipes, /dev/zero, a growing file).
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageError("unreadable", wording.unreadable_file(exc.strerror or str(exc))) from None
    return data


def _refuse_known_non_image(data: bytes) -> None:
    kind = file_kind(data)
    if kind == HEIC:
        raise _format_refused(HEIC)
    if kind is not None:
        raise not_an_image(kind)
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head.startswith(b"<"):  # markup only; an image's metadata may mention <svg
        return
    if b"<svg" in head:
        raise ImageError(
            "not_image", wording.svg_refused(_ALLOWED_TEXT), wording.svg_file(_ALLOWED_TEXT)
        )
    if b"<html" in head or head.startswith(b"<!doctype html"):
        raise ImageError("not_image", wording.not_an_image(wording.FILE_KINDS["html"]))
    if head.startswith(b"<?xml"):
        raise ImageError("not_image", wording.not_an_image(wording.FILE_KINDS["xml"]))


def _open(data: bytes) -> ImageFile.ImageFile:
    with contextlib.suppress(UnidentifiedImageError):
        return Image.open(BytesIO(data), formats=ALLOWED_FORMATS)
    if data.startswith(_ALLOWED_MAGIC):
        raise ImageError("corrupt", wording.IMAGE_CORRUPT)
    other = _identify_other_format(data)
    if other is not None:
        raise _format_refused(other)
    if _is_text(data):
        raise ImageError("not_image", wording.not_an_image(wording.FILE_KINDS["text"]))
    raise ImageError("not_image", wording.NOT_AN_IMAGE)


def _identify_other_format(data: bytes) -> str | None:
    """Name an image format we do not accept from its signature alone.

    Only Pillow's signature checks run: parsing a format we refuse anyway is needless attack
    surface, and those plugins warn and log about every damaged header.
    """
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        if name in ALLOWED_FORMATS or accept is None:
            continue
        # A check may fail on a few bytes itself (DIB's reads four: struct.error for "ok"), as
        # Pillow's own Image.open allows for; then it is not that format.
        with contextlib.suppress(SyntaxError, IndexError, TypeError, struct.error):
            if accept(data[:16]):
                return name
    return None


def _format_refused(name: str) -> ImageError:
    return ImageError(
        "unsupported_format",
        wording.format_refused(name, _ALLOWED_TEXT),
        wording.format_file(name, _ALLOWED_TEXT),
    )


def _is_text(data: bytes) -> bool:
    head = data[:4096]
    if b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="replace")
    printable = sum((c.isprintable() and c != "\ufffd") or c in "\t\r\n" for c in text)
    return printable >= 0.95 * len(text)


def _check_header(img: Image.Image, limits: ImageLimits) -> None:
    """Refuse on the declared size alone, before a single pixel is decoded."""
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageError("corrupt", wording.IMAGE_NO_SIZE)
    pixels = width * height
    bomb_limit = Image.MAX_IMAGE_PIXELS
    if bomb_limit is not None and pixels > bomb_limit:
        # Pillow's own check already fires during open; this covers a caller that changed it.
        raise ImageError("bomb", wording.IMAGE_BOMB)
    if pixels > limits.max_pixels:
        raise ImageError(
            "too_many_pixels", wording.too_many_pixels(width, height, pixels, limits.max_pixels)
        )
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise ImageError(
            "aspect_ratio", wording.too_thin(width, height, ratio, limits.max_aspect_ratio)
        )


def _draft(img: Image.Image, draft_size: int | None) -> None:
    """Let libjpeg decode at 1/2..1/8 scale, never below draft_size on either side."""
    if draft_size is None or not isinstance(img, JpegImagePlugin.JpegImageFile):
        return
    if min(img.size) > draft_size:
        img.draft("RGB", (draft_size, draft_size))


def _looks_truncated(data: bytes, exc: BaseException) -> bool:
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return True
    # libwebp only says "could not create decoder"; the RIFF header knows the real length.
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP" and len(data) >= 12:
        return len(data) < int.from_bytes(data[4:8], "little") + 8
    return False
