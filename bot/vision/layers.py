"""A model's linear layers for the project's own loops over transformers' weights
(bot/vision/decoder.py, bot/vision/text_tower.py): several linear layers that read the same
input run as one, on the model's tensors or on packed copies, as modules TorchScript can
compile. And CLIP's activation computed in place."""

import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import QuickGELUActivation

from bot.vision.packed import Kind, packed_linear


def linear(*modules: nn.Linear, packed: Kind | None = None) -> nn.Module:
    """`x @ weight.T + bias` for an `nn.Linear`, or several side by side (outputs concatenated).

    Plain, it uses the model's own tensors: no copy. `packed` stores the weights once more for
    fbgemm (bot/vision/packed.py): float16, or int8 on CPUs with VNNI, where a few rows meet
    each weight (decode steps, text encoders), which is bound by reading them (half the bytes
    made a decode step's linear layers 2-3x faster on an AVX2 CPU); int8 for projecting an
    image's hundreds of tokens, which is bound by arithmetic. The activations stay float32.
    Packed, it keeps no float32 weights, so they are freed once the model lets go of them."""
    if not packed:
        return Linear(modules)
    weight = torch.cat([m.weight.detach() for m in modules])
    biases = [_bias(m) for m in modules]
    bias = None
    if any(b is not None for b in biases):
        zeros = [m.weight.new_zeros(m.weight.shape[0]) for m in modules]
        bias = torch.cat([z if b is None else b for z, b in zip(zeros, biases, strict=True)])
    return packed_linear(weight, bias, packed)


class Linear(nn.Module):
    """Plain linear layers side by side, on the model's own tensors."""

    # Evaluated, not postponed (no `from __future__ import annotations` in this file):
    # TorchScript reads these to type the lists, and cannot parse them as strings.
    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]

    def __init__(self, modules: tuple[nn.Linear, ...]) -> None:
        super().__init__()
        self.weights = [m.weight.detach() for m in modules]
        self.biases = [_bias(m) for m in modules]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.weights) == 1:
            return F.linear(x, self.weights[0], self.biases[0])
        # Indexed: TorchScript has no zip(strict=...).
        parts = [F.linear(x, self.weights[i], self.biases[i]) for i in range(len(self.weights))]
        return torch.cat(parts, dim=-1)


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
