"""The packed-weight calls compiled by TorchScript (bot/vision/kernels.py) against the same
functions run as Python, which is what a torch without TorchScript would run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from bot.vision import kernels
from bot.vision.packed import Kind, PackedWeights

PYTHON: dict[Kind, Callable[..., torch.Tensor]] = {
    "float16": lambda x, w: kernels._float16(x, w.params),
    "int8": lambda x, w: kernels._int8_items(x, w.params),
    "int8-rows": lambda x, w: kernels._int8_rows(x, w.params, w.sums, w.bias, w.levels),
}


def test_this_torch_compiles_them() -> None:
    for call in (kernels.float16, kernels.int8_items, kernels.int8_rows):
        assert isinstance(call, torch.jit.ScriptFunction)


@pytest.mark.parametrize("kind", list(PYTHON))
def test_compiled_calls_equal_the_python_ones_to_the_bit(kind: Kind) -> None:
    generator = torch.Generator().manual_seed(3)
    weights = PackedWeights(
        torch.randn(48, 32, generator=generator) * 0.1, torch.randn(48, generator=generator), kind
    )
    for shape in ((1, 32), (5, 32), (3, 7, 32)):
        x = torch.randn(shape, generator=generator) * 4 + 1
        x[0, ..., :] = 2.5  # a constant row: its range is 0
        compiled = weights(x)
        assert compiled.shape == (*shape[:-1], 48)
        assert torch.equal(compiled, PYTHON[kind](x, weights))
