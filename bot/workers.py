"""The one gateway from the event loop to worker threads.

Nothing else in the project calls `run_in_executor`. Work goes down one of three lanes, each a
bounded pool, so that slow model calls never hold up database writes or image decoding.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, ParamSpec, TypeVar

from bot.vision.cores import Cores
from bot.vision.devices import cpu_threads

P = ParamSpec("P")
T = TypeVar("T")
Lane = Literal["model", "prep", "db"]


class Workers:
    """`model`: one thread (torch spreads each call over the cores itself); `prep`: image
    decoding and preprocessing, overlapping model compute; `db`: one thread, so SQLite sees a
    single writer. `cores`: one single-threaded torch worker per core, which the model thread
    hands a batch's images to side by side on a CPU (bot/vision/cores.py)."""

    def __init__(self, *, model_threads: int = 1, prep_threads: int | None = None) -> None:
        # Decoding is the indexer's bottleneck once a GPU runs the model: a thread per two
        # cores (at least 2, at most 8) leaves the rest to torch on a CPU-only box.
        prep_threads = prep_threads or min(8, max(2, cpu_threads() // 2))
        self._pools: dict[Lane, ThreadPoolExecutor] = {
            "model": ThreadPoolExecutor(model_threads, thread_name_prefix="glimpse-model"),
            "prep": ThreadPoolExecutor(prep_threads, thread_name_prefix="glimpse-prep"),
            "db": ThreadPoolExecutor(1, thread_name_prefix="glimpse-db"),
        }
        self.cores = Cores(cpu_threads())
        self._closed = False

    async def run(self, lane: Lane, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise RuntimeError("the worker threads are shut down")
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pools[lane], call)

    def shutdown(self, wait: bool = True) -> None:
        """Lets running calls finish; queued ones are cancelled."""
        self._closed = True
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=True)
        self.cores.shutdown(wait=wait)
