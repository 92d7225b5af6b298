"""What TorchScript compiles (bot/vision/kernels.py: the packed-weight calls, and the decode
step of bot/vision/decoder.py) against the same code run as Python, which is what a torch
without TorchScript, or a GPU, runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from bot.vision import kernels
from bot.vision.blip import Captioner
from bot.vision.decoder import TextDecoder
from bot.vision.packed import Kind, packed_linear
from tests.conftest import TINY_BLIP

PYTHON: dict[Kind, Callable[[torch.Tensor, Any], torch.Tensor]] = {
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
    weights = packed_linear(
        torch.randn(48, 32, generator=generator) * 0.1, torch.randn(48, generator=generator), kind
    )
    for shape in ((1, 32), (5, 32), (3, 7, 32)):
        x = torch.randn(shape, generator=generator) * 4 + 1
        x[0, ..., :] = 2.5  # a constant row: its range is 0
        compiled = weights(x)
        assert compiled.shape == (*shape[:-1], 48)
        assert torch.equal(compiled, PYTHON[kind](x, weights))


@pytest.mark.parametrize("kind", [None, "float16", "int8-rows"])
def test_a_compiled_decode_step_equals_the_python_one_to_the_bit(kind: Kind | None) -> None:
    """The step as TorchScript compiles it on a CPU, against the same module run as Python (as
    on a GPU, where CUDA graphs replay it instead), over caches filled the same way."""
    tiny = Captioner.load(str(TINY_BLIP), torch.device("cpu"), torch.float32, 30)
    decoder = TextDecoder(tiny.model.text_decoder, steps=kind)
    assert isinstance(decoder._run, torch.jit.ScriptModule)
    generator = torch.Generator().manual_seed(4)
    config = tiny.model.config
    width, words = config.vision_config.hidden_size, config.text_config.vocab_size
    embeds = torch.randn(3, tiny.image_tokens, width, generator=generator)
    slots = [decoder.empty_slots(3, 8, tiny.image_tokens) for _ in range(2)]
    for s in slots:
        decoder.write_cross(s, 0, embeds)
    with torch.inference_mode():
        for position in range(4):
            tokens = torch.randint(0, words, (3,), generator=generator)
            where = torch.tensor([position, max(0, position - 1), 0])
            compiled = decoder.step(tokens, where, slots[0], position + 1)
            python = decoder.maths(tokens, where, slots[1].self_kv, slots[1].cross_kv, position + 1)
            assert torch.equal(compiled, python)
    assert torch.equal(slots[0].self_kv, slots[1].self_kv)
