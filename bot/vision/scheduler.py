"""Micro-batching for the model thread: concurrent requests of one kind run as one batch.

One scheduler owns the model lane. It takes the oldest interactive request first (indexing work
waits while commands are queued), gathers up to `max_batch` compatible requests (same kind and
same key, e.g. the same caption prompt) for at most `wait_s`, and runs them together.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from bot import wording
from bot.errors import UserError

INTERACTIVE, BACKGROUND = 0, 1


class Busy(UserError):
    def __init__(self) -> None:
        super().__init__(wording.BUSY)


RunBatch = Callable[[Hashable, list[Any]], Awaitable[list[Any]]]


@dataclass
class _Job:
    kind: str
    key: Hashable
    item: Any
    priority: int
    future: asyncio.Future[Any]
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0

    @property
    def mean(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class Scheduler:
    def __init__(self, *, max_batch: int, wait_s: float, max_pending: int) -> None:
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_pending = max_pending
        self.stats = BatchStats()
        self._runners: dict[str, RunBatch] = {}
        self._queues: tuple[list[_Job], list[_Job]] = ([], [])
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count()
        self._running = 0  # batches being run now

    def register(self, kind: str, run: RunBatch) -> None:
        """`run(key, items)` returns one result per item, in order; an exception instance as a
        result fails that item's caller only."""
        self._runners[kind] = run

    @property
    def waiting(self) -> int:
        """Interactive requests still waiting (ones whose caller gave up do not count)."""
        return sum(1 for job in self._queues[INTERACTIVE] if not job.future.done())

    @property
    def idle(self) -> bool:
        """No batch running and none waiting, of any priority."""
        live = (job for queue in self._queues for job in queue if not job.future.done())
        return self._running == 0 and next(live, None) is None

    def check_room(self, priority: int = INTERACTIVE, count: int = 1) -> None:
        """Raises Busy now, before a caller spends anything preparing `count` requests."""
        if priority == INTERACTIVE and self.waiting + count > self.max_pending:
            raise Busy

    async def submit(self, kind: str, key: Hashable, item: Any, priority: int = INTERACTIVE) -> Any:
        self.check_room(priority)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._loop(), name=f"glimpse-batcher-{next(self._ids)}"
            )
        job = _Job(kind, key, item, priority, asyncio.get_running_loop().create_future())
        self._queues[priority].append(job)
        self._arrived.set()
        return await job.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for queue in self._queues:
            for job in queue:
                job.future.cancel()
            queue.clear()

    async def _loop(self) -> None:
        while True:
            head = self._next_job()
            if head is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = head.arrived + self.wait_s
            while self._compatible_count(head) < self.max_batch and time.monotonic() < deadline:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
            batch = self._take(head)
            await self._run(head, batch)

    def _next_job(self) -> _Job | None:
        for queue in self._queues:
            live = [job for job in queue if not job.future.cancelled()]
            queue[:] = live
            if live:
                return live[0]
        return None

    def _compatible_count(self, head: _Job) -> int:
        return sum(
            1
            for queue in self._queues
            for job in queue
            if job.kind == head.kind and job.key == head.key
        )

    def _take(self, head: _Job) -> list[_Job]:
        batch: list[_Job] = []
        for queue in self._queues:
            keep = []
            for job in queue:
                if len(batch) < self.max_batch and job.kind == head.kind and job.key == head.key:
                    batch.append(job)
                else:
                    keep.append(job)
            queue[:] = keep
        return [job for job in batch if not job.future.cancelled()]

    async def _run(self, head: _Job, batch: list[_Job]) -> None:
        if not batch:
            return
        self._running += 1
        try:
            results = await self._runners[head.kind](head.key, [job.item for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{head.kind}: {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for job in batch:
                job.future.cancel()
            raise
        except Exception as exc:  # every waiter hears of the failure; the loop goes on
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self._running -= 1
        self.stats.batches += 1
        self.stats.items += len(batch)
        for job, result in zip(batch, results, strict=True):
            if job.future.done():
                continue
            if isinstance(result, BaseException):  # this item failed alone; the rest did not
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
