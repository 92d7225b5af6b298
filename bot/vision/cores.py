"""Independent pieces of one model call (the images of a batch) side by side, one per core.

torch spreads each operator over the cores, and pays for it: at each operator's end the threads
wait for the slowest. BLIP's vision encoder took 344 ms per image on two threads against 585 on
one (2-core Intel Xeon): 85% of two cores. Two images at once, each on its own core with one
thread, took 299-324 ms per image against 353-404 one after the other, equal to the bit (each
image runs the same operators either way).

Each worker runs torch on one thread. With more, it would keep an OpenMP team of its own, and
once a process's OpenMP threads outnumber the cores, libgomp stops spin-waiting between parallel
regions: the model thread's decode steps took 45 ms instead of 15 (README, Performance).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


class Cores:
    """`count` single-threaded torch workers, started at first use, for the model thread."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` of every item, in order, in inference mode (a thread does not inherit its
        caller's). Whole rounds of `count` items run side by side, one per core; the rest run
        on the calling thread one after the other, with all of its torch threads, so that no
        core idles while one item runs alone on another."""
        whole = len(items) - len(items) % self.count if self.count > 1 else 0
        run = _inferring(fn)
        results = list(self._started().map(run, items[:whole])) if whole else []
        return results + [run(item) for item in items[whole:]]

    def shutdown(self, *, wait: bool = True) -> None:
        """Lets running items finish; queued ones are cancelled."""
        with self._lock:
            self._closed = True
            if self._pool is not None:
                self._pool.shutdown(wait=wait, cancel_futures=True)

    def _started(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker threads are shut down")
            if self._pool is None:
                self._pool = self._start()
            return self._pool

    def _start(self) -> ThreadPoolExecutor:
        """The workers, each set to one torch thread before it runs anything. torch keeps one
        thread count for the process, which a thread copies at its first torch call, and
        `torch.set_num_threads` sets both: the caller's count is put back once every worker
        has its own one, so that a thread started later gets the caller's, not one."""
        threads = torch.get_num_threads()
        ready = threading.Barrier(self.count + 1)

        def one_thread() -> None:
            torch.get_num_threads()  # its first call: copies the process's count, then ...
            torch.set_num_threads(1)  # ... its own is set
            ready.wait()

        pool = ThreadPoolExecutor(
            self.count, thread_name_prefix="glimpse-core", initializer=one_thread
        )
        for _ in range(self.count):  # each task starts a thread: none is idle yet
            pool.submit(_nothing)
        ready.wait()
        torch.set_num_threads(threads)
        return pool


def _inferring(fn: Callable[[T], R]) -> Callable[[T], R]:
    def run(item: T) -> R:
        with torch.inference_mode():
            return fn(item)

    return run


def _nothing() -> None:
    """A task that only makes the pool start a thread."""
