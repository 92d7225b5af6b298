"""Captions as iteration-level batching: the scheduler's `caption` kind, one decode step at a
time (as serving systems for generative models do: Orca, vLLM, TGI).

A request joins the running decode at the next step boundary instead of waiting for a batch to
finish: newcomers' images are encoded together, their sequences take free cache slots, and a
sequence leaves the batch, answered, the step it ends. Requests with different prompts share
the batch. Every model call goes through `predict`, the service's gateway to the model lane.

When the batch empties, its cache is kept, and the next batch starts from it, for as long as the
model stays loaded (as a GPU's fixed cache is, bot/vision/graphed.py): on a CPU, fresh memory for
16 captions' caches took 0.1-1.1 s of page faults (83,000 of them, on a 2-core cloud VM), paid
again by every burst that found the cache given back. Kept a minute only, it was given back
between most bursts of a real server's traffic; the memory is the largest batch's, which the
host must hold at that batch's peak anyway, and it goes when the models unload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from bot.vision.blip import Captioner, CaptionInputs
from bot.vision.decoder import Slots
from bot.vision.running import RunningBatch

R = TypeVar("R")
Predict = Callable[[Callable[[], R]], Awaitable[R]]


class CaptionStream:
    """A `bot.vision.scheduler.Stepper`: items are futures of `CaptionInputs`, results are
    captions."""

    def __init__(
        self,
        captioner: Callable[[], Awaitable[Captioner]],
        predict: Predict[Any],
        capacity: int,
    ) -> None:
        self._captioner = captioner
        self._predict = predict
        self._capacity = capacity  # the scheduler never has more in flight
        self._batch: RunningBatch | None = None
        self._owner: Captioner | None = None  # whose decoder the running batch uses
        self._leaving: set[int] = set()
        self._spare: tuple[Captioner, Slots] | None = None  # an emptied batch's cache

    @property
    def busy(self) -> bool:
        batch = self._batch
        return batch is not None and any(s.ticket not in self._leaving for s in batch.sequences)

    async def join(
        self, items: list[tuple[int, asyncio.Future[CaptionInputs]]]
    ) -> list[tuple[int, BaseException]]:
        captioner = await self._captioner()
        inputs = await asyncio.gather(*(future for _, future in items), return_exceptions=True)
        failed: list[tuple[int, BaseException]] = []
        ready: list[tuple[int, CaptionInputs]] = []
        for (ticket, _), part in zip(items, inputs, strict=True):
            if isinstance(part, BaseException):
                failed.append((ticket, part))
            else:
                ready.append((ticket, part))
        if not ready:
            return failed
        running = self._batch if self.busy and self._owner is captioner else None
        spare = None
        if running is None:
            spare = self._take_spare(captioner)
        leaving = self._leaving

        def join() -> RunningBatch:
            # A new batch is made on the model lane too: on a GPU it may record CUDA graphs.
            batch = running or captioner.running_batch(self._capacity, spare)
            # The scheduler counted the places of callers who gave up as free: on a GPU's
            # fixed cache, newcomers joining beside them would be refused.
            batch.remove(leaving)
            captioner.join(batch, ready)
            return batch

        try:
            batch = await self._predict(join)
        except Exception as exc:  # these requests fail; the ones decoding already go on
            return failed + [(ticket, exc) for ticket, _ in ready]
        self._batch, self._owner = batch, captioner
        return failed

    async def step(self) -> list[tuple[int, str]]:
        batch, owner, leaving = self._batch, self._owner, self._leaving
        self._leaving = set()
        if batch is None or owner is None:
            return []
        try:
            ended = await self._predict(lambda: _step(owner, batch, leaving))
        except BaseException:
            self._batch = None  # its sequences fail with this; the next request starts afresh
            raise
        if not batch.sequences and batch is self._batch:
            self._retire()
        return ended

    def leave(self, tickets: Iterable[int]) -> None:
        """Called between steps: no step is using the batch's cache."""
        self._leaving.update(tickets)
        if self._batch is not None and not self.busy:
            self._retire()

    def _retire(self) -> None:
        """The running batch has nothing left to step (its sequences ended, or their callers
        gave up): its cache is kept for the next batch."""
        batch, owner = self._batch, self._owner
        if batch is not None and batch.slots is not None and owner is not None:
            self._spare = (owner, batch.slots)
        self._batch = None

    def _take_spare(self, captioner: Captioner | None) -> Slots | None:
        """The kept cache, if `captioner` made it (a reloaded model starts afresh)."""
        spare, self._spare = self._spare, None
        return spare[1] if spare is not None and spare[0] is captioner else None

    def forget(self) -> None:
        """The models are being let go of: nothing made by them is kept here. Only while no
        caption is in flight (the service unloads an idle scheduler, or a closed one)."""
        self._take_spare(None)
        self._batch, self._owner = None, None


def _step(captioner: Captioner, batch: RunningBatch, leaving: set[int]) -> list[tuple[int, str]]:
    """Runs on the model lane: drops abandoned sequences, steps, decodes the ended ones."""
    batch.remove(leaving)
    ended = batch.step()
    captions: Sequence[str] = captioner.postprocess([s.tokens for s in ended]) if ended else []
    return [(s.ticket, text) for s, text in zip(ended, captions, strict=True)]
