"""How many pixels may be decoded at once, so that huge images take turns instead of all
holding their full size in memory together."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Above this, a decode's freed pixels are handed back to the system at once (see _trim).
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
                _trim()
            with self._changed:
                self._free += want
                self._changed.notify_all()


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)  # glibc only


_MALLOC_TRIM = _load_trim()


def _trim() -> None:
    """glibc keeps a freed decode's memory in the decoding thread's arena, so with two prep
    threads the process held two huge images' worth for good (measured: RSS growth varied from
    250 to 450 MB on the same uploads); malloc_trim returns it to the system."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
