"""BLIP's text decoder as one decode step over many sequences, each with its own cache slot.

transformers' `generate()` runs a batch from its first token to its last. Here the model's own
weights run one token per sequence per step, and every sequence owns a slot in `Slots` (its
self-attention keys and values, and its image's cross-attention keys and values, computed once
when it joins), so sequences join and leave between steps (bot/vision/running.py). The maths is
the model's modules' (greedy captions equal `generate()`'s at float32: tests/test_decoding.py)
in fewer operations per step: no cache objects, mask builders or output records, and each
image's cross-attention keys and values written straight into its slot when it joins. On a CPU
the step is compiled by TorchScript, so that its ~1,000 operator calls do not each go through
Python.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.blip.modeling_blip_text import BlipTextLayer, BlipTextLMHeadModel

from bot.vision.cores import Cores
from bot.vision.kernels import compiled, warm_up
from bot.vision.layers import linear
from bot.vision.packed import Kind


class Layer(nn.Module):
    """One decoder layer's weights: self-attention, cross-attention, feed-forward."""

    def __init__(self, layer: BlipTextLayer, packed: Kind | None) -> None:
        super().__init__()
        attention, cross = layer.attention, layer.crossattention
        s, c = attention.self, cross.self
        self.qkv = linear(s.query, s.key, s.value, packed=packed)
        self.attention_out = linear(attention.output.dense, packed=packed)
        self.attention_norm = attention.output.LayerNorm
        self.cross_query = linear(c.query, packed=packed)
        self.cross_out = linear(cross.output.dense, packed=packed)
        self.cross_norm = cross.output.LayerNorm
        self.up = linear(layer.intermediate.dense, packed=packed)
        self.down = linear(layer.output.dense, packed=packed)
        self.out_norm = layer.output.LayerNorm


class Slots:
    """The caches of up to `capacity` sequences, slot i of every tensor for sequence i.

    `self_kv` is [layers, 2, capacity, heads, length, head_dim], `cross_kv` the same with the
    image's tokens in place of `length`. Active sequences are kept in slots 0..n-1, so a step
    reads contiguous slices and never gathers.
    """

    def __init__(self, self_kv: torch.Tensor, cross_kv: torch.Tensor) -> None:
        self.self_kv = self_kv
        self.cross_kv = cross_kv

    @property
    def capacity(self) -> int:
        return self.self_kv.shape[2]

    @property
    def length(self) -> int:
        return self.self_kv.shape[4]

    def resized(self, capacity: int, length: int) -> Slots:
        """A copy with room for `capacity` sequences of `length` tokens each."""
        grown = []
        for cache, size in ((self.self_kv, length), (self.cross_kv, self.cross_kv.shape[4])):
            shape = (*cache.shape[:2], capacity, cache.shape[3], size, cache.shape[5])
            bigger = cache.new_zeros(shape)
            keep_slots, keep_len = min(capacity, self.capacity), min(size, cache.shape[4])
            bigger[:, :, :keep_slots, :, :keep_len] = cache[:, :, :keep_slots, :, :keep_len]
            grown.append(bigger)
        return Slots(*grown)

    def move(self, source: int, target: int) -> None:
        self.self_kv[:, :, target] = self.self_kv[:, :, source]
        self.cross_kv[:, :, target] = self.cross_kv[:, :, source]


class Step(nn.Module):
    """One decode step over the weights of a `BlipTextLMHeadModel` (see TextDecoder.step)."""

    def __init__(
        self,
        model: BlipTextLMHeadModel,
        steps: Kind | None,
        cross_dtype: torch.dtype,
        written_out: bool,
    ) -> None:
        """`written_out`: cross-attention as two matrix products and a softmax, not torch's
        fused attention (on a CPU: see `cross_attention`)."""
        super().__init__()
        config = model.config
        self.heads = int(config.num_attention_heads)
        self.head_dim = int(config.hidden_size) // self.heads
        self.cross_dtype = cross_dtype
        self.written_out = written_out
        self.root = float(self.head_dim) ** 0.5
        embeddings = model.bert.embeddings
        self.words = embeddings.word_embeddings
        self.places = embeddings.position_embeddings
        self.embedding_norm = embeddings.LayerNorm
        layers = nn.ModuleList(Layer(layer, steps) for layer in model.bert.encoder.layer)
        self.layers = cast("list[Layer]", layers)  # for the type checker: what it holds
        head = model.cls.predictions
        self.transform = linear(head.transform.dense, packed=steps)
        self.transform_norm = head.transform.LayerNorm
        self.vocabulary = linear(head.decoder, packed=steps)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        self_kv: torch.Tensor,
        cross_kv: torch.Tensor,
        length: int,
    ) -> torch.Tensor:
        n, heads, dim = tokens.shape[0], self.heads, self.head_dim
        hidden = F.embedding(tokens, self.words.weight) + F.embedding(positions, self.places.weight)
        hidden = self.embedding_norm(hidden)
        rows = torch.arange(n, device=tokens.device)
        visible = torch.arange(length, device=tokens.device) <= positions[:, None]
        visible = visible[:, None, None, :]
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(hidden).view(n, 3, heads, dim)
            cache = self_kv[i]
            cache[:, rows, :, positions] = qkv[:, 1:]
            context = F.scaled_dot_product_attention(
                qkv[:, 0, :, None],
                cache[0, :n, :, :length],
                cache[1, :n, :, :length],
                attn_mask=visible,
            )
            hidden = layer.attention_norm(layer.attention_out(context.view(n, -1)) + hidden)
            query = layer.cross_query(hidden).view(n, heads, 1, dim).to(self.cross_dtype)
            context = self.cross_attention(query, cross_kv[i, 0, :n], cross_kv[i, 1, :n])
            context = context.to(hidden.dtype)
            hidden = layer.cross_norm(layer.cross_out(context.view(n, -1)) + hidden)
            hidden = layer.out_norm(layer.down(F.gelu(layer.up(hidden))) + hidden)
        hidden = self.transform_norm(F.gelu(self.transform(hidden)))
        return self.vocabulary(hidden)

    def cross_attention(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """Each sequence's one query row over its image's tokens.

        Written out on a CPU: torch's fused attention at one query row took 70.5 ms a step of
        16 captions against 28.6 over bfloat16 keys and values, 39.8 against 35.3 over float32
        ones (int8 weights, AMD EPYC Zen 5, medians of interleaved steps). The scores are scaled
        and their softmax taken in float32, in the order BLIP's own attention takes them."""
        if not self.written_out:
            return F.scaled_dot_product_attention(query, keys, values)
        scores = torch.matmul(query, keys.transpose(-1, -2)).float() / self.root
        return torch.matmul(scores.softmax(dim=-1).to(values.dtype), values)


class TextDecoder:
    """The weights of a `BlipTextLMHeadModel`, laid out for one-token steps."""

    def __init__(
        self,
        model: BlipTextLMHeadModel,
        *,
        steps: Kind | None = None,
        cross_dtype: torch.dtype | None = None,
        cores: Cores | None = None,
    ) -> None:
        """`steps`: packed weights (bot/vision/packed.py) of that kind for the decode steps,
        and int8 ones for projecting images; None keeps the model's float weights.
        `cross_dtype`: the images' cross-attention keys and values, if not the model's.
        `cores`: on a CPU, workers that project a batch's images side by side."""
        self.dtype = model.bert.embeddings.word_embeddings.weight.dtype
        self.device = model.bert.embeddings.word_embeddings.weight.device
        self.cross_dtype = cross_dtype or self.dtype
        self.cores = cores or Cores(1)
        self.maths = Step(model, steps, self.cross_dtype, self.device.type == "cpu")
        self.heads, self.head_dim = self.maths.heads, self.maths.head_dim
        # On a CPU a step is bound by the cost of its ~1,000 operator calls as much as by its
        # weights: compiled by TorchScript, a step of one caption took 11.9 ms against 14.4
        # from Python (Intel Xeon, int8 weights, median of interleaved steps), equal to the
        # bit. On a GPU the step is replayed as a CUDA graph (bot/vision/graphed.py) instead.
        self._run = compiled(self.maths) if self.device.type == "cpu" else self.maths
        crosses = [layer.crossattention.self for layer in model.bert.encoder.layer]
        images: Kind | None = "int8" if steps else None
        self.cross_projections = [linear(c.key, c.value, packed=images) for c in crosses]

    @property
    def places(self) -> torch.Tensor:
        """The position embeddings (one row per position the model knows)."""
        return self.maths.places.weight

    def empty_slots(self, capacity: int, length: int, image_tokens: int) -> Slots:
        layers, heads, dim = len(self.maths.layers), self.heads, self.head_dim
        new = self.maths.words.weight.new_zeros
        return Slots(
            new((layers, 2, capacity, heads, length, dim)),
            new((layers, 2, capacity, heads, image_tokens, dim), dtype=self.cross_dtype),
        )

    def write_cross(self, slots: Slots, first: int, image_embeds: torch.Tensor) -> None:
        """Projects a batch of image embeddings to every layer's cross-attention keys and
        values, into slots `first`, `first + 1`, ... (one layer at a time: little memory).

        On a CPU image by image, side by side on `cores`: a layer's projection of 16 images is
        56 MB of float32, fresh memory the allocator faulted in at every join (167,000 page
        faults for 16 images), copied from once; one image's 3.5 MB is reused and still in
        cache when it is copied into the slot. 69 -> 39 ms per image for 16 images (Intel
        Xeon); with int8 weights equal to the bit, since they quantise each image on its own
        anyway."""
        embeds = image_embeds.to(self.dtype)
        if self.device.type != "cpu":
            self._project(slots, first, embeds)
            return
        self.cores.map(
            lambda i: self._project(slots, first + i, embeds[i : i + 1]), range(len(embeds))
        )

    def _project(self, slots: Slots, first: int, embeds: torch.Tensor) -> None:
        images, tokens, _ = embeds.shape
        place = slice(first, first + images)
        for i, projection in enumerate(self.cross_projections):
            # Converted to the cache's dtype before the copy into the slot's layout: converting
            # within that strided copy took 14-20 ms an image on one core (12 layers, bfloat16
            # cache, Intel Xeon) against 10-12, for the same values.
            keys_values = projection(embeds).to(slots.cross_kv.dtype)
            shaped = keys_values.view(images, tokens, 2, self.heads, self.head_dim)
            slots.cross_kv[i, :, place] = shaped.permute(2, 0, 3, 1, 4)

    def warm_up(self, image_tokens: int) -> None:
        """Where the step is compiled, two steps of one sequence on a throwaway cache for
        images of `image_tokens` tokens, so that the first caption finds it optimised
        (bot/vision/kernels.py, warm_up)."""
        if self._run is self.maths:
            return
        slots = self.empty_slots(1, 1, image_tokens)
        first = torch.zeros(1, dtype=torch.long, device=self.device)
        warm_up(lambda: self.step(first, first, slots, 1))

    def step(
        self, tokens: torch.Tensor, positions: torch.Tensor, slots: Slots, length: int
    ) -> torch.Tensor:
        """Logits for the next token of sequences 0..n-1, each fed `tokens[i]` at
        `positions[i]`; their keys and values are written into their slots on the way.
        `length` bounds the positions attended to (the longest sequence's, plus one)."""
        return self._run(tokens, positions, slots.self_kv, slots.cross_kv, length)
