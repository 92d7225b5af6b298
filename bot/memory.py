"""Handing freed memory back to the system.

glibc's malloc keeps what a thread frees in that thread's arena for later use, and raises its
threshold for serving big blocks by mmap each time one is freed, so that after a big free the
next big buffers come from the arena too. A process that once held a large working set (a huge
decode, a model's loading) then keeps its pages long after it let go of them. `malloc_trim`
returns an arena's free pages to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)  # glibc only


_MALLOC_TRIM = _load_trim()


def release_freed() -> None:
    """Returns the free pages of every malloc arena to the system (no-op off glibc). Takes
    tens of milliseconds with a model's worth freed, holding the arenas meanwhile: for moments
    after large frees, not for every request."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
