"""Decode steps at fixed shapes over one preallocated cache, replayed as CUDA graphs on a GPU.

On a GPU a decode step is a few hundred small kernels, and launching them costs more than
running them: the loop is bound by launches, not by the card. A CUDA graph records the step's
kernels once and replays them with one launch, but only for fixed shapes and fixed memory. So
here the cache holds `capacity` slots of `length` positions from the start and never moves;
a step runs a bucket of rows (1, 2, 4, ... up to `capacity`: the active sequences, slots
0..n-1, padded with idle rows), and each bucket is recorded the first time it is needed. The
padding rows feed token 0 at position 0 of idle slots, which every sequence overwrites when it
starts. Every bucket is recorded when the cache is made, so no request pays for a recording.
Where graphs are not available (a CPU), or recording fails, the same fixed-shape step runs as
it is.
"""

from __future__ import annotations

import logging

import torch

from bot.vision.decoder import TextDecoder

log = logging.getLogger(__name__)


class FixedSteps:
    def __init__(self, decoder: TextDecoder, capacity: int, length: int, image_tokens: int) -> None:
        self.decoder = decoder
        self.slots = decoder.empty_slots(capacity, length, image_tokens)
        device = decoder.device
        self.tokens = torch.zeros(capacity, dtype=torch.long, device=device)
        self.positions = torch.zeros(capacity, dtype=torch.long, device=device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        if device.type == "cuda":
            self._record_all()

    def fits(self, count: int, length: int, image_tokens: int) -> bool:
        slots = self.slots
        return (
            count <= slots.capacity
            and length <= slots.length
            and image_tokens == slots.cross_kv.shape[4]
        )

    def __call__(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Logits [len(tokens), vocabulary] for sequences 0..n-1 (see `TextDecoder.step`)."""
        n = len(tokens)
        bucket = min(1 << max(0, n - 1).bit_length(), self.slots.capacity)
        padding = [0] * (bucket - n)
        self.tokens[:bucket].copy_(torch.tensor(tokens + padding))
        self.positions[:bucket].copy_(torch.tensor(positions + padding))
        if bucket not in self._graphs:
            return self._step(bucket)[:n]
        graph, logits = self._graphs[bucket]
        graph.replay()
        return logits[:n]

    def _record_all(self) -> None:
        bucket = 1
        try:
            while bucket <= self.slots.capacity:
                self._graphs[bucket] = self._record(bucket)
                bucket *= 2
        except RuntimeError:
            log.warning("CUDA graphs unavailable; decode steps run without them", exc_info=True)
            self._graphs.clear()

    def _step(self, bucket: int) -> torch.Tensor:
        tokens, positions = self.tokens[:bucket], self.positions[:bucket]
        return self.decoder.step(tokens, positions, self.slots, self.slots.length)

    def _record(self, bucket: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Warms the step up on a side stream (lazy initialisation stays out of the graph),
        then records it. The steps write keys and values at position 0 of every slot, which
        each sequence overwrites when it starts. `thread_local`: other threads' CUDA calls
        (the prep threads', an embedding's) do not spoil this thread's recording."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step(bucket)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            logits = self._step(bucket)
        return graph, logits


def fixed_length(max_positions: int, max_tokens: int) -> int:
    """Positions a caption may use: a prompt (truncated to half the model's positions) and the
    caption, within the model's limit."""
    return min(max_positions, max_positions // 2 + max_tokens)
