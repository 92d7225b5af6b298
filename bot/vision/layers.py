"""A model's linear layers and layer norms as plain callables, for the project's own loops
over transformers' weights (bot/vision/decoder.py, bot/vision/text_tower.py): no module hooks
or output records per call, and several linear layers that read the same input run as one.
And CLIP's activation computed in place."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import QuickGELUActivation

from bot.vision.packed import Kind, PackedWeights


class Linear:
    """`x @ weight.T + bias` for an `nn.Linear`, or several side by side (outputs concatenated).

    Plain, it uses the model's own tensors: no copy. `packed` stores the weights once more for
    fbgemm (bot/vision/packed.py): float16, or int8 on CPUs with VNNI, where a few rows meet
    each weight (decode steps, text encoders), which is bound by reading them (half the bytes
    made a decode step's linear layers 2-3x faster on an AVX2 CPU); int8 for projecting an
    image's hundreds of tokens, which is bound by arithmetic. The activations stay float32.
    Packed, it keeps no float32 weights, so they are freed once the model lets go of them."""

    def __init__(self, *modules: nn.Linear, packed: Kind | None = None) -> None:
        parts = [(m.weight.detach(), _bias(m)) for m in modules]
        self.parts: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.packed: PackedWeights | None = None
        if not packed:
            self.parts = parts
            return
        weight = torch.cat([weight for weight, _ in parts])
        bias = None
        if any(b is not None for _, b in parts):
            bias = torch.cat([w.new_zeros(w.shape[0]) if b is None else b for w, b in parts])
        self.packed = PackedWeights(weight, bias, packed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return self.packed(x)
        if len(self.parts) == 1:
            return F.linear(x, *self.parts[0])
        return torch.cat([F.linear(x, weight, bias) for weight, bias in self.parts], dim=-1)


class Norm:
    """A `nn.LayerNorm`'s maths. Its tensors are read from the module at each call, so they
    follow the module when `own_memory` moves them out of the checkpoint's file."""

    def __init__(self, module: nn.LayerNorm) -> None:
        self.module = module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)


def _bias(module: nn.Linear) -> torch.Tensor | None:
    return None if module.bias is None else module.bias.detach()


class InPlaceQuickGelu(nn.Module):
    """CLIP's `x * sigmoid(1.702 * x)`, the same operations in the same order (equal to the
    bit), on one new tensor instead of three: at a batch of 16 images each is 10 MB of fresh
    memory per layer. CLIP's image embeddings 27-33 -> 26-28 ms per image (Intel Xeon)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 1.702).sigmoid_().mul_(x)


def quick_gelu_in_place(model: nn.Module) -> None:
    """Replaces every `QuickGELUActivation` inside `model` (CLIP's; SigLIP uses another)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is QuickGELUActivation:
                parent.register_module(name, InPlaceQuickGelu())
