"""How many pixels may be decoded at once, so that huge images take turns instead of all
holding their full size in memory together."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bot.memory import release_freed

# Above this, a decode's freed pixels are handed back to the system at once: glibc kept them in
# the decoding thread's arena, so with two prep threads the process held two huge images' worth
# for good (measured: RSS growth varied from 250 to 450 MB on the same uploads).
TRIM_ABOVE_PIXELS = 8_000_000

# A 7000 x 7000 RGBA PNG is 196 MB while it decodes; two at once would double the peak.
DEFAULT_PIXELS = 50_000_000  # MAX_IMAGE_PIXELS by default: the largest image decodes alone


class PixelBudget:
    """A counting semaphore over pixels, for the prep threads (never awaited on the loop)."""

    def __init__(self, pixels: int = DEFAULT_PIXELS) -> None:
        self.pixels = pixels
        self._free = pixels
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Waits until `pixels` fit (an image larger than the whole budget waits for all of it)."""
        want = min(pixels, self.pixels)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= want)
            self._free -= want
        try:
            yield
        finally:
            if pixels > TRIM_ABOVE_PIXELS:
                release_freed()
            with self._changed:
                self._free += want
                self._changed.notify_all()
