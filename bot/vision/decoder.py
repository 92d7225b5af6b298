"""BLIP's text decoder as one decode step over many sequences, each with its own cache slot.

transformers' `generate()` runs a batch from its first token to its last. Here the model's own
weights run one token per sequence per step, and every sequence owns a slot in `Slots` (its
self-attention keys and values, and its image's cross-attention keys and values, computed once
when it joins), so sequences join and leave between steps (bot/vision/running.py). The maths is
the model's modules' (greedy captions equal `generate()`'s at float32: tests/test_decoding.py)
in fewer Python operations per step: no cache objects, mask builders or output records, and
each image's cross-attention keys and values written straight into its slot when it joins.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers.models.blip.modeling_blip_text import BlipTextLayer, BlipTextLMHeadModel

from bot.vision.layers import Linear, Norm
from bot.vision.packed import Kind


class Layer:
    """One decoder layer's weights: self-attention, cross-attention, feed-forward."""

    def __init__(self, layer: BlipTextLayer, packed: Kind | None) -> None:
        attention, cross = layer.attention, layer.crossattention
        s, c = attention.self, cross.self
        self.qkv = Linear(s.query, s.key, s.value, packed=packed)
        self.attention_out = Linear(attention.output.dense, packed=packed)
        self.attention_norm = Norm(attention.output.LayerNorm)
        self.cross_query = Linear(c.query, packed=packed)
        self.cross_out = Linear(cross.output.dense, packed=packed)
        self.cross_norm = Norm(cross.output.LayerNorm)
        self.up = Linear(layer.intermediate.dense, packed=packed)
        self.down = Linear(layer.output.dense, packed=packed)
        self.out_norm = Norm(layer.output.LayerNorm)


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


class TextDecoder:
    """The weights of a `BlipTextLMHeadModel`, laid out for one-token steps."""

    def __init__(
        self,
        model: BlipTextLMHeadModel,
        *,
        steps: Kind | None = None,
        cross_dtype: torch.dtype | None = None,
    ) -> None:
        """`steps`: packed weights (bot/vision/packed.py) of that kind for the decode steps,
        and int8 ones for projecting images; None keeps the model's float weights.
        `cross_dtype`: the images' cross-attention keys and values, if not the model's."""
        config = model.config
        self.heads = int(config.num_attention_heads)
        self.width = int(config.hidden_size)
        self.head_dim = self.width // self.heads
        embeddings = model.bert.embeddings
        self._words = embeddings.word_embeddings
        self._places = embeddings.position_embeddings
        self.embedding_norm = Norm(embeddings.LayerNorm)
        self.layers = [Layer(layer, steps) for layer in model.bert.encoder.layer]
        crosses = [layer.crossattention.self for layer in model.bert.encoder.layer]
        images: Kind | None = "int8" if steps else None
        self.cross_projections = [Linear(c.key, c.value, packed=images) for c in crosses]
        head = model.cls.predictions
        self.transform = Linear(head.transform.dense, packed=steps)
        self.transform_norm = Norm(head.transform.LayerNorm)
        self.vocabulary = Linear(head.decoder, packed=steps)
        self.dtype = self.words.dtype
        self.device = self.words.device
        self.cross_dtype = cross_dtype or self.dtype

    @property
    def words(self) -> torch.Tensor:
        """The word embeddings, read from the module (see Norm)."""
        return self._words.weight

    @property
    def places(self) -> torch.Tensor:
        return self._places.weight

    def empty_slots(self, capacity: int, length: int, image_tokens: int) -> Slots:
        layers, heads, dim = len(self.layers), self.heads, self.head_dim
        new = self.words.new_zeros
        return Slots(
            new((layers, 2, capacity, heads, length, dim)),
            new((layers, 2, capacity, heads, image_tokens, dim), dtype=self.cross_dtype),
        )

    def write_cross(self, slots: Slots, first: int, image_embeds: torch.Tensor) -> None:
        """Projects a batch of image embeddings to every layer's cross-attention keys and
        values, into slots `first`, `first + 1`, ... (one layer at a time: little memory).

        On a CPU one image at a time too: a layer's projection of 16 images is 56 MB of
        float32, fresh memory the allocator faulted in at every join (167,000 page faults for
        16 images), copied from once; one image's 3.5 MB is reused and still in cache when it
        is copied into the slot. 69 -> 39 ms per image for 16 images (Intel Xeon); with int8
        weights equal to the bit, since they quantise each image on its own anyway."""
        images, tokens, _ = image_embeds.shape
        embeds = image_embeds.to(self.dtype)
        chunk = 1 if self.device.type == "cpu" else images
        for start in range(0, images, chunk):
            part = embeds[start : start + chunk]
            place = slice(first + start, first + start + part.shape[0])
            for i, projection in enumerate(self.cross_projections):
                shaped = projection(part).view(part.shape[0], tokens, 2, self.heads, self.head_dim)
                slots.cross_kv[i, :, place] = shaped.permute(2, 0, 3, 1, 4)

    def step(
        self, tokens: torch.Tensor, positions: torch.Tensor, slots: Slots, length: int
    ) -> torch.Tensor:
        """Logits for the next token of sequences 0..n-1, each fed `tokens[i]` at
        `positions[i]`; their keys and values are written into their slots on the way.
        `length` bounds the positions attended to (the longest sequence's, plus one)."""
        n, heads, dim = tokens.shape[0], self.heads, self.head_dim
        hidden = F.embedding(tokens, self.words) + F.embedding(positions, self.places)
        hidden = self.embedding_norm(hidden)
        rows = torch.arange(n, device=tokens.device)
        visible = torch.arange(length, device=tokens.device) <= positions[:, None]
        visible = visible[:, None, None, :]
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(hidden).view(n, 3, heads, dim)
            cache = slots.self_kv[i]
            cache[:, rows, :, positions] = qkv[:, 1:]
            context = F.scaled_dot_product_attention(
                qkv[:, 0, :, None],
                cache[0, :n, :, :length],
                cache[1, :n, :, :length],
                attn_mask=visible,
            )
            hidden = layer.attention_norm(layer.attention_out(context.view(n, -1)) + hidden)
            query = layer.cross_query(hidden).view(n, heads, 1, dim).to(self.cross_dtype)
            context = F.scaled_dot_product_attention(
                query, slots.cross_kv[i, 0, :n], slots.cross_kv[i, 1, :n]
            ).to(hidden.dtype)
            hidden = layer.cross_norm(layer.cross_out(context.view(n, -1)) + hidden)
            hidden = layer.out_norm(layer.down(F.gelu(layer.up(hidden))) + hidden)
        hidden = self.transform_norm(F.gelu(self.transform(hidden)))
        return self.vocabulary(hidden)
