"""Batching for the model thread: concurrent requests of one kind run as one batch, and
requests of a stepped kind join a running batch between its steps.

One scheduler owns the model lane. It takes the oldest interactive request first (indexing work
waits while commands are queued), gathers up to `max_batch` compatible requests (same kind and
same key) for at most `wait_s`, and runs them together. A stepped kind (captions: a `Stepper`)
is iteration-level batching instead: its requests advance together one step at a time, a new
one joins at the next step boundary while others are still in flight, and each is answered the
step it ends. Between two steps, a waiting interactive batch of another kind runs (a `!find`
never waits for a caption to finish); while only background captions step, a background batch
may run there too (indexing never waits for a stream of automatic descriptions to end).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot import wording
from bot.errors import UserError
from bot.tasks import cancel_until_done

INTERACTIVE, BACKGROUND = 0, 1


class Busy(UserError, ours=True):
    def __init__(self) -> None:
        super().__init__(wording.BUSY)


RunBatch = Callable[[Hashable, list[Any]], Awaitable[list[Any]]]


class Stepper(Protocol):
    """Work that advances one step at a time, that requests join and leave between steps."""

    @property
    def busy(self) -> bool:
        """Requests are in flight (a step is due)."""

    async def join(self, items: list[tuple[int, Any]]) -> list[tuple[int, BaseException]]:
        """Takes `(ticket, item)` pairs in; returns the ones that failed to join."""

    async def step(self) -> list[tuple[int, Any]]:
        """One step; returns `(ticket, result)` for the requests that ended in it. Raising
        fails every request in flight, and the stepper starts afresh."""

    def leave(self, tickets: Iterable[int]) -> None:
        """These requests' callers gave up: drop them at the next step."""


@dataclass(eq=False)
class _Job:
    kind: str
    key: Hashable
    item: Any
    priority: int
    future: asyncio.Future[Any]
    ticket: int = 0
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """Per kind: batches run and items in them; for a stepped kind, steps and the requests
    in flight at each, so `mean` is the mean batch of a decode step."""

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
        self.stats: defaultdict[str, BatchStats] = defaultdict(BatchStats)
        self._runners: dict[str, RunBatch] = {}
        self._steppers: dict[str, Stepper] = {}
        self._flight: dict[int, _Job] = {}  # requests inside a stepper, by ticket
        self._queues: tuple[list[_Job], list[_Job]] = ([], [])
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count()
        self._running = 0  # batches being run now

    def register(self, kind: str, run: RunBatch) -> None:
        """`run(key, items)` returns one result per item, in order; an exception instance as a
        result fails that item's caller only."""
        self._runners[kind] = run

    def register_stepper(self, kind: str, stepper: Stepper) -> None:
        self._steppers[kind] = stepper

    @property
    def waiting(self) -> int:
        """Interactive requests still waiting (ones whose caller gave up do not count)."""
        return sum(1 for job in self._queues[INTERACTIVE] if not job.future.done())

    @property
    def idle(self) -> bool:
        """No batch running or stepping, and none waiting, of any priority."""
        live = (job for queue in self._queues for job in queue if not job.future.done())
        stepping = any(stepper.busy for stepper in self._steppers.values())
        return self._running == 0 and not stepping and next(live, None) is None

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
        future = asyncio.get_running_loop().create_future()
        job = _Job(kind, key, item, priority, future, next(self._ids))
        self._queues[priority].append(job)
        self._arrived.set()
        return await job.future

    async def close(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)  # (its batching wait may swallow one cancel)
            self._task = None
        for queue in self._queues:
            for job in queue:
                job.future.cancel()
            queue.clear()
        for job in self._flight.values():
            job.future.cancel()
        for kind, stepper in self._steppers.items():
            stepper.leave(t for t, job in self._flight.items() if job.kind == kind)
        self._flight.clear()

    async def _loop(self) -> None:
        while True:
            stepping = [kind for kind, stepper in self._steppers.items() if stepper.busy]
            if stepping:
                await self._between_steps()
                for kind in stepping:
                    await self._advance(kind)
                continue
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
            if head.kind in self._steppers:
                await self._join(head.kind, batch)
            else:
                await self._run(head, batch)

    def _next_job(self) -> _Job | None:
        for queue in self._queues:
            live = [job for job in queue if not job.future.cancelled()]
            queue[:] = live
            if live:
                return live[0]
        return None

    def _compatible_count(self, head: _Job) -> int:
        return sum(1 for queue in self._queues for job in queue if self._fits(head, job))

    def _fits(self, head: _Job, job: _Job) -> bool:
        """Same kind, and for a batched kind the same key (a stepper mixes keys)."""
        return job.kind == head.kind and (job.kind in self._steppers or job.key == head.key)

    def _take(self, head: _Job, limit: int = 0, queues: Sequence[list[_Job]] = ()) -> list[_Job]:
        limit = limit or self.max_batch
        batch: list[_Job] = []
        for queue in queues or self._queues:
            keep = []
            for job in queue:
                if len(batch) < limit and self._fits(head, job):
                    batch.append(job)
                else:
                    keep.append(job)
            queue[:] = keep
        return [job for job in batch if not job.future.cancelled()]

    async def _between_steps(self) -> None:
        """Runs one waiting batch of a batched kind, if any, between two steps: an interactive
        one; or, while only background requests are stepping (automatic descriptions), a
        background one, so that indexing is not held up for as long as they keep coming."""
        background_only = all(job.priority == BACKGROUND for job in self._flight.values())
        queues = self._queues if background_only else self._queues[: INTERACTIVE + 1]
        waiting = (job for queue in queues for job in queue if not job.future.cancelled())
        head = next((job for job in waiting if job.kind not in self._steppers), None)
        if head is not None:  # background work of its kind waits too, not only its own batch
            await self._run(head, self._take(head, queues=queues))

    async def _advance(self, kind: str) -> None:
        """Callers that gave up leave, newcomers join, then one step; the ended are answered."""
        stepper = self._steppers[kind]
        flight = {t: job for t, job in self._flight.items() if job.kind == kind}
        gone = [ticket for ticket, job in flight.items() if job.future.done()]
        stepper.leave(gone)
        for ticket in gone:
            del self._flight[ticket]
        room = self.max_batch - (len(flight) - len(gone))
        head = next((j for q in self._queues for j in q if j.kind == kind), None)
        if head is not None and room > 0:
            await self._join(kind, self._take(head, room))
        flight = {t: job for t, job in self._flight.items() if job.kind == kind}
        self._running += 1
        try:
            ended = await stepper.step()
        except asyncio.CancelledError:
            self._fail(flight.values(), None)
            raise
        except Exception as exc:  # every request in flight hears of it; the loop goes on
            self._fail(flight.values(), exc)
            return
        finally:
            self._running -= 1
        if flight:
            self.stats[kind].batches += 1
            self.stats[kind].items += len(flight)
        for ticket, result in ended:
            _answer(self._flight.pop(ticket), result)

    async def _join(self, kind: str, jobs: list[_Job]) -> None:
        if not jobs:
            return
        self._flight.update((job.ticket, job) for job in jobs)
        self._running += 1
        try:
            failed = await self._steppers[kind].join([(job.ticket, job.item) for job in jobs])
        except asyncio.CancelledError:
            self._fail(jobs, None)
            raise
        except Exception as exc:
            failed = [(job.ticket, exc) for job in jobs]
        finally:
            self._running -= 1
        for ticket, error in failed:
            _answer(self._flight.pop(ticket), error)

    def _fail(self, jobs: Iterable[_Job], error: Exception | None) -> None:
        """Cancels (`error` None) or fails these jobs, and forgets those in flight."""
        for job in list(jobs):
            self._flight.pop(job.ticket, None)
            if job.future.done():
                continue
            if error is None:
                job.future.cancel()
            else:
                job.future.set_exception(error)

    async def _run(self, head: _Job, batch: list[_Job]) -> None:
        if not batch:
            return
        self._running += 1
        try:
            results = await self._runners[head.kind](head.key, [job.item for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{head.kind}: {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            self._fail(batch, None)
            raise
        except Exception as exc:  # every waiter hears of the failure; the loop goes on
            self._fail(batch, exc)
            return
        finally:
            self._running -= 1
        self.stats[head.kind].batches += 1
        self.stats[head.kind].items += len(batch)
        for job, result in zip(batch, results, strict=True):
            _answer(job, result)


def _answer(job: _Job, result: Any) -> None:
    """An exception instance as a result fails this job alone."""
    if job.future.done():
        return
    if isinstance(result, BaseException):
        job.future.set_exception(result)
    else:
        job.future.set_result(result)
