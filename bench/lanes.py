"""The service's worker lanes, timed: how busy a run kept the model thread and the decoding
threads. Indexing is bound by the model where its thread never waits, by decoding where the
model thread waits for pictures while the decoding threads are all busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from bot.workers import Lane, Workers

P = ParamSpec("P")
T = TypeVar("T")


class TimedWorkers(Workers):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.busy_s: dict[Lane, float] = {"model": 0.0, "prep": 0.0, "db": 0.0}

    async def run(self, lane: Lane, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def timed() -> T:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.busy_s[lane] += time.perf_counter() - started

        return await super().run(lane, timed)
