"""The running decode: captions that join and leave one shared batch between decode steps.

Sequence i of the batch lives in slot i of the cache (`bot.vision.decoder.Slots`). A newcomer
takes the next free slot with its image's cross-attention keys and values; a finished or
abandoned sequence leaves at once and the last slots move into the holes, so the active
sequences stay contiguous. Greedy decoding exactly as BLIP's `generate()` does it: the prompt's
tokens (bos first) are fed one per step, then each step's argmax is the next token, until the
separator token or the sequence's token limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from bot.vision.decoder import Slots, TextDecoder
from bot.vision.graphed import FixedSteps


@dataclass
class Decoding:
    """One caption being decoded; `tokens` is what `generate()` returns: prompt, then caption."""

    ticket: int
    tokens: list[int]
    limit: int  # the most new tokens
    least: int = 0  # new tokens before the separator may end it (generate's min_new_tokens)
    fed: int = 0
    generated: int = 0

    @property
    def cache_length(self) -> int:
        """Positions this sequence will ever write: its prompt and all but its last token."""
        return len(self.tokens) - self.generated + self.limit - 1


class RunningBatch:
    def __init__(
        self,
        decoder: TextDecoder,
        stop_token: int,
        fixed: FixedSteps | None = None,
        spare: Slots | None = None,
    ) -> None:
        """`fixed`: run fixed-shape steps over its cache (CUDA graphs), else a cache that
        grows with the batch, starting from `spare` (an earlier batch's, whose stale contents
        every sequence overwrites or masks) where it is big enough."""
        self.decoder = decoder
        self.stop_token = stop_token
        self.fixed = fixed
        self.sequences: list[Decoding] = []
        self.slots: Slots | None = None
        self._spare = spare

    def __len__(self) -> int:
        return len(self.sequences)

    @torch.inference_mode()
    def join(self, sequences: list[Decoding], image_embeds: torch.Tensor) -> None:
        """Adds sequences, one per row of `image_embeds` (the vision encoder's output)."""
        count = len(self.sequences) + len(sequences)
        length = max(s.cache_length for s in [*self.sequences, *sequences])
        self._reserve(count, length, image_embeds.shape[1])
        assert self.slots is not None
        self.decoder.write_cross(self.slots, len(self.sequences), image_embeds)
        self.sequences.extend(sequences)

    @torch.inference_mode()
    def step(self) -> list[Decoding]:
        """Feeds every sequence its next token; returns the ones that ended, now removed."""
        if not self.sequences or self.slots is None:
            return []
        tokens = [s.tokens[s.fed] for s in self.sequences]
        positions = [s.fed for s in self.sequences]
        if self.fixed is not None:
            logits = self.fixed(tokens, positions)
        else:
            device = self.decoder.device
            fed = torch.tensor(tokens, device=device)
            where = torch.tensor(positions, device=device)
            logits = self.decoder.step(fed, where, self.slots, max(positions) + 1)
        for row, sequence in enumerate(self.sequences):
            if sequence.generated < sequence.least:
                logits[row, self.stop_token] = float("-inf")
        chosen = logits.argmax(dim=-1).tolist()
        ended = []
        for sequence, token in zip(self.sequences, chosen, strict=True):
            sequence.fed += 1
            if sequence.fed < len(sequence.tokens):
                continue  # still feeding the prompt
            sequence.tokens.append(token)
            sequence.generated += 1
            if token == self.stop_token or sequence.generated >= sequence.limit:
                ended.append(sequence)
        self.remove(s.ticket for s in ended)
        return ended

    @torch.inference_mode()
    def remove(self, tickets: Iterable[int]) -> None:
        """Drops sequences; the last slots fill the holes so the active ones stay in front."""
        leaving = set(tickets)
        if not leaving:
            return
        kept = len([s for s in self.sequences if s.ticket not in leaving])
        holes = [i for i, s in enumerate(self.sequences[:kept]) if s.ticket in leaving]
        movers = [i for i, s in enumerate(self.sequences) if i >= kept and s.ticket not in leaving]
        for hole, mover in zip(holes, movers, strict=True):
            assert self.slots is not None
            self.slots.move(mover, hole)
            self.sequences[hole] = self.sequences[mover]
        del self.sequences[kept:]

    def _reserve(self, count: int, length: int, image_tokens: int) -> None:
        if self.fixed is not None:
            if not self.fixed.fits(count, length, image_tokens):
                raise ValueError(f"{count} captions of {length} tokens exceed the fixed cache")
            self.slots = self.fixed.slots
            return
        slots = self.slots
        if slots is None and self._spare is not None:
            slots, self._spare = self._spare, None
            if slots.cross_kv.shape[4] != image_tokens:
                slots = None
            elif slots.capacity < count or slots.length < length:
                # Nothing in it is worth copying: a fresh cache as big as both.
                count, length = max(count, slots.capacity), max(length, slots.length)
                slots = None
            self.slots = slots
        if slots is not None and slots.capacity >= count and slots.length >= length:
            return
        capacity = 1 << max(0, count - 1).bit_length()  # doubling: few copies as a batch grows
        length = min(-(-length // 32) * 32, self.decoder.places.shape[0])
        if slots is None:
            self.slots = self.decoder.empty_slots(capacity, length, image_tokens)
        else:
            self.slots = slots.resized(max(capacity, slots.capacity), max(length, slots.length))
