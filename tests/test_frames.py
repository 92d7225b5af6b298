"""Issue 15, item 4: animations are embedded from up to 4 frames and captioned from their first
frame that is not blank, within the memory and time bounds of still images (bot/images)."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from bot.images import frames as frames_module
from bot.images.budget import PixelBudget
from bot.images.decode import load_frames
from bot.images.frames import spread
from tests.animations import animation
from tests.shapes import CLASSES, draw_shape

WHITE = Image.new("RGB", (160, 160), (255, 255, 255))
CLEAR = Image.new("RGBA", (160, 160), (200, 0, 0, 0))  # fully transparent: white on white


def shapes(count: int, size: int = 160) -> list[Image.Image]:
    return [draw_shape(random.Random(i), *CLASSES[i % 12], size) for i in range(count)]


def close(a: Image.Image, b: Image.Image) -> bool:
    """The same picture, give or take a GIF palette."""
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b.convert("RGB"), np.int16))
    return float(diff.mean()) < 12


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_blank_frames_are_skipped_and_four_frames_spread_over_the_rest(fmt: str) -> None:
    drawn = shapes(9)
    lead = [WHITE, CLEAR.convert("RGB") if fmt == "GIF" else CLEAR]
    decoded = load_frames(animation([*lead, *drawn], fmt))
    assert close(decoded.caption, drawn[0])  # the first frame that is not blank
    assert spread(2, 11) == [2, 4, 6, 8]
    assert len(decoded.embedded) == 4
    for picture, index in zip(decoded.embedded, spread(2, 11), strict=True):
        assert close(picture, drawn[index - 2])
    assert decoded.embedded[0] is decoded.caption


def test_short_and_blank_animations() -> None:
    drawn = shapes(2)
    two = load_frames(animation(drawn, "GIF"))
    assert len(two.embedded) == 2 and close(two.caption, drawn[0])
    blank = load_frames(animation([WHITE, Image.new("RGB", (160, 160), (0, 0, 0))], "GIF"))
    # Every frame one colour: the first stands for them all.
    assert blank.embedded == (blank.caption,) and blank.caption.getpixel((5, 5)) == (255, 255, 255)
    one = Image.new("RGB", (160, 160), (255, 255, 255))
    one.putpixel((80, 80), (0, 0, 0))  # one pixel of another colour: not blank
    dotted = load_frames(animation([WHITE, one, *drawn], "PNG"))
    assert dotted.caption.getpixel((80, 80)) == (0, 0, 0)


def test_a_still_image_is_its_own_only_frame() -> None:
    buffer = io.BytesIO()
    WHITE.save(buffer, "GIF")
    decoded = load_frames(buffer.getvalue())
    assert decoded.embedded == (decoded.caption,)


def test_a_damaged_later_frame_ends_the_animation_there() -> None:
    drawn = shapes(4)
    data = animation(drawn, "GIF")
    decoded = load_frames(data[: len(data) - len(data) // 10])  # cut off in its last frame
    assert len(decoded.embedded) == 3 and close(decoded.caption, drawn[0])


def test_the_walk_is_bounded_in_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "MAX_WALK_FRAMES", 3)
    greys = [Image.new("RGB", (160, 160), (g, g, g)) for g in (255, 250, 245, 240)]
    # The only picture is the fifth frame, past the walk: the first frame stands for it all.
    decoded = load_frames(animation([*greys, *shapes(1)], "GIF"))
    assert decoded.embedded == (decoded.caption,)
    assert decoded.caption.getpixel((1, 1)) == (255, 255, 255)


class CountingBudget(PixelBudget):
    def __init__(self) -> None:
        super().__init__()
        self.holds: list[int] = []

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        self.holds.append(pixels)
        with super().hold(pixels):
            yield


def test_frames_are_reduced_like_stills_under_one_budget_hold() -> None:
    big = shapes(5, size=1600)
    budget = CountingBudget()
    decoded = load_frames(animation(big, "GIF"), budget=budget)
    assert budget.holds == [1600 * 1600]  # the size of one frame, held once
    assert len(decoded.embedded) == 4
    assert all(max(picture.size) <= 768 for picture in decoded.embedded)


def _gif_blocks(data: bytes) -> tuple[bytes, list[bytes]]:
    """A GIF's header (with its colour table) and its image blocks, extensions dropped."""
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    head, blocks = data[:pos], []
    while data[pos] != 0x3B:
        start = pos
        if data[pos] == 0x21:  # an extension: its label, then sub-blocks
            pos += 2
        else:  # an image: descriptor, local colour table, LZW code size, then sub-blocks
            local = data[pos + 9]
            pos += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0) + 1
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
        if data[start] == 0x2C:
            blocks.append(data[start:pos])
    return head, blocks


def test_a_frame_that_outgrows_the_declared_canvas_ends_the_animation() -> None:
    """A 1 x 1 GIF whose second frame is 3000 x 3000: Pillow would enlarge the canvas to it,
    past the size checks made at open. The walk stops before decoding it."""

    def gif(image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.convert("P").save(out, "GIF")
        return out.getvalue()

    head, (tiny,) = _gif_blocks(gif(Image.new("RGB", (1, 1), "white")))
    halves = Image.new("RGB", (3000, 3000), "white")
    halves.paste((0, 0, 0), (0, 0, 1500, 3000))  # not blank: it would be the caption frame
    _, (huge,) = _gif_blocks(gif(halves))
    crafted = head + tiny + huge + b";"
    with Image.open(io.BytesIO(crafted)) as opened:
        assert opened.size == (1, 1) and opened.n_frames == 2
    budget = CountingBudget()
    decoded = load_frames(crafted, budget=budget)
    assert decoded.caption.size == (1, 1) and decoded.embedded == (decoded.caption,)
    assert budget.holds == [1]
