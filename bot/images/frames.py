"""The frames of an animation: which are embedded, which is captioned, and when one is blank.

GIF, animated WebP and APNG (and AVIF sequences) are embedded from up to EMBEDDED_FRAMES frames
spread evenly from the first frame that is not blank to the end, and captioned from that first
frame. A frame is blank when all its pixels are one colour after compositing onto white: a
fade-in's empty frame says nothing about the picture. Frames are read one at a time, each
reduced at once like a still image, so an animation costs the memory of one frame; the walk
stops after MAX_WALK_FRAMES frames or WALK_PIXELS decoded pixels, so a huge or endless
animation costs bounded time, and a damaged frame ends the animation where it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageFile

from bot.images.errors import DECODE_ERRORS

EMBEDDED_FRAMES = 4
MAX_WALK_FRAMES = 1000
WALK_PIXELS = 100_000_000  # twice MAX_IMAGE_PIXELS' default: a few seconds of decoding at most
ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP", "AVIF"})

Finish = Callable[[Image.Image], Image.Image]  # a frame's copy -> the RGB picture models get


@dataclass(frozen=True)
class Frames:
    """A decoded image as the models get it: one picture to caption, one or more to embed."""

    caption: Image.Image
    embedded: tuple[Image.Image, ...]

    @classmethod
    def still(cls, image: Image.Image) -> Frames:
        return cls(image, (image,))


def is_animated(img: ImageFile.ImageFile) -> bool:
    """Several frames in a format we read as an animation (a JPEG's extra pictures are not)."""
    return img.format in ANIMATED_FORMATS and bool(getattr(img, "is_animated", False))


def is_blank(frame: Image.Image) -> bool:
    """All pixels one colour; `frame` is already composited onto white (RGB)."""
    extrema = frame.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(band[0] == band[1] for band in bands)


def read_animation(img: ImageFile.ImageFile, finish: Finish) -> Frames:
    """The caption frame and the embedded frames of an animation positioned at frame 0."""
    total = min(
        int(getattr(img, "n_frames", 1)),
        MAX_WALK_FRAMES,
        max(1, WALK_PIXELS // (img.width * img.height)),
    )
    canvas = img.size
    first, caption = _first_shown(img, total, finish, canvas)
    if first is None:
        return Frames.still(caption)  # every frame blank: the first stands for them all
    embedded = [caption]
    for index in spread(first, total)[1:]:
        try:
            embedded.append(_frame(img, index, finish, canvas))
        except DECODE_ERRORS:
            break
    return Frames(caption, tuple(embedded))


class CanvasGrew(EOFError):
    """A frame larger than the canvas its header declared: Pillow enlarges the canvas for it,
    past every check made at open (a 1 x 1 GIF of 8000 x 8000 frames took 0.56 s a frame). The
    animation ends before it, as at a damaged frame."""


def spread(first: int, total: int) -> list[int]:
    """Up to EMBEDDED_FRAMES frame numbers spread evenly over [first, total)."""
    count = min(EMBEDDED_FRAMES, total - first)
    return sorted({first + i * (total - first) // count for i in range(count)})


def _first_shown(
    img: ImageFile.ImageFile, total: int, finish: Finish, canvas: tuple[int, int]
) -> tuple[int | None, Image.Image]:
    """The first frame that is not blank and its number; None and frame 0 when there is none.
    Frame 0 must decode; a later frame that does not ends the search."""
    opening = _frame(img, 0, finish, canvas)
    if not is_blank(opening):
        return 0, opening
    for index in range(1, total):
        try:
            frame = _frame(img, index, finish, canvas)
        except DECODE_ERRORS:
            break
        if not is_blank(frame):
            return index, frame
    return None, opening


def _frame(
    img: ImageFile.ImageFile, index: int, finish: Finish, canvas: tuple[int, int]
) -> Image.Image:
    """Frame `index`, reached one frame at a time (each composited onto the last, as Pillow
    would itself), so that a frame outgrowing the canvas is caught before it is decoded."""
    if index == 0:
        img.seek(0)
    while img.tell() < index:
        img.seek(img.tell() + 1)
        if img.size != canvas:
            raise CanvasGrew(f"frame {img.tell()} is {img.size}, the canvas {canvas}")
    return finish(img.copy())  # a copy: the file object keeps its state for the next seek
