"""The decode step beside packed weights (bot/vision/packed.py): float16 weights, or int8 with
each row's inputs scaled to their own range, which the service chooses on CPUs with VNNI; and
the images' cross-attention keys and values in float32, or in bfloat16 on CPUs with bfloat16
dot products. Every combination is tested on any CPU: without VNNI the int8 inputs keep the bit
of headroom fbgemm needs there, and without bfloat16 instructions torch emulates them."""

from __future__ import annotations

import pytest
import torch

from bench.photos import photo
from bot.vision import cpu
from bot.vision.blip import Captioner
from bot.vision.decoder import TextDecoder
from bot.vision.packed import Kind, packed_linear
from tests.conftest import TINY_BLIP
from tests.test_decoding import decode_staggered, requests_for

KINDS: list[Kind] = ["float16", "int8-rows"]
CONFIGS = [(kind, cache) for kind in KINDS for cache in (torch.float32, torch.bfloat16)]
# How far the tiny model's logits may move from float32's: float16 rounds the weights only;
# int8 rounds them and each input too, to 1/255 of its row's range.
TOLERANCE = {"float16": 2e-2, "int8-rows": 0.1}


def tiny_float32() -> Captioner:
    return Captioner.load(str(TINY_BLIP), torch.device("cpu"), torch.float32, 30)


def first_step(decoder: TextDecoder, embeds: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Logits of one step of sequences fed `tokens` at position 0, one per row of `embeds`."""
    rows = len(tokens)
    slots = decoder.empty_slots(rows, 1, embeds.shape[1])
    decoder.write_cross(slots, 0, embeds)
    return decoder.step(torch.tensor(tokens), torch.zeros(rows, dtype=torch.long), slots, 1)


@pytest.mark.parametrize(("kind", "cache"), CONFIGS)
def test_decode_steps_of_any_size_stay_close_to_float32(kind: Kind, cache: torch.dtype) -> None:
    fp32 = tiny_float32()
    fast = TextDecoder(fp32.model.text_decoder, steps=kind, cross_dtype=cache)
    with torch.inference_mode():
        pixels = torch.cat([fp32.preprocess(photo(64, 48, s)).pixel_values for s in range(3)])
        embeds = fp32.model.vision_model(pixel_values=pixels)[0]
        for rows in (1, 3, 16):
            chosen = embeds[[i % 3 for i in range(rows)]]
            tokens = [fp32.start_token] * rows
            exact = first_step(fp32.decoder, chosen, tokens)
            packed = first_step(fast, chosen, tokens)
            assert not torch.equal(packed, exact)
            torch.testing.assert_close(packed, exact, rtol=0, atol=TOLERANCE[kind])
            assert torch.equal(packed.argmax(dim=-1), exact.argmax(dim=-1))


@pytest.mark.parametrize("cache", [torch.float32, torch.bfloat16])
def test_an_int8_row_does_not_depend_on_the_rows_beside_it(cache: torch.dtype) -> None:
    """A plain image's first step alone, then beside a busy, brightened image fed another
    token: the inputs of its linear layers are quantised on their own range, so its logits
    are the same to the bit."""
    fp32 = tiny_float32()
    fast = TextDecoder(fp32.model.text_decoder, steps="int8-rows", cross_dtype=cache)
    busy = fp32.preprocess(photo(64, 64, 3)).pixel_values * 4
    plain = fp32.preprocess(photo(64, 48, 0)).pixel_values
    with torch.inference_mode():
        embeds = fp32.model.vision_model(pixel_values=torch.cat([plain, busy]))[0]
        alone = first_step(fast, embeds[:1], [fp32.start_token])
        beside = first_step(fast, embeds, [fp32.start_token, fp32.stop_token])
    assert torch.equal(beside[0], alone[0])


@pytest.mark.parametrize(("kind", "cache"), CONFIGS)
def test_packed_decode_steps_give_the_same_captions_as_float32(
    kind: Kind, cache: torch.dtype
) -> None:
    """Tiny BLIP, sequences joining mid-decode: float32 throughout against the int8 vision
    encoder of a packed captioner and decode steps on packed weights of `kind`."""
    fp32 = tiny_float32()
    fast = Captioner.load(str(TINY_BLIP), torch.device("cpu"), torch.float32, 30, packed=True)
    fast.decoder = TextDecoder(fp32.model.text_decoder, steps=kind, cross_dtype=cache)
    requests = requests_for(40, seed=21)
    finished = [decode_staggered(c, c.running_batch(16), requests, 22)[0] for c in (fp32, fast)]
    assert finished[0] == finished[1]
    assert len({tuple(tokens) for tokens in finished[0].values()}) >= 10


@pytest.mark.parametrize(("vnni", "levels"), [(True, 255), (False, 127)])
def test_int8_rows_quantise_each_row_to_its_own_range(
    monkeypatch: pytest.MonkeyPatch, vnni: bool, levels: int
) -> None:
    """`int8-rows` against the scheme worked out in float64: each row's inputs rounded to
    `levels` steps between its least and greatest value (8 bits with VNNI, the 7 fbgemm needs
    without), times the weights rounded per output to int8. The other bit width lands further
    off than the float32 arithmetic may."""
    if vnni and not cpu.has_vnni():
        # Without VNNI fbgemm sums pairs of products in 16 bits, which 8-bit inputs can
        # saturate: why the product takes 7 bits there.
        pytest.skip("8-bit inputs are chosen only where the CPU has VNNI")
    monkeypatch.setattr(cpu, "has_vnni", lambda: vnni)
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(96, 64, generator=generator) * 0.05
    bias = torch.randn(96, generator=generator)
    # Rows of very different ranges and offsets, and one constant row.
    rows = torch.randn(6, 64, generator=generator) * torch.tensor(
        [[0.01], [1], [30], [1], [5], [0]]
    )
    rows += torch.tensor([[0.0], [3], [-40], [0], [2], [7]])
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    int8_weight = (weight / scale).round().clamp(-127, 127) * scale

    def expected(steps: int) -> torch.Tensor:
        x = rows.double()
        lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
        span = (hi - lo).clamp_min(1e-30)
        quantised = ((x - lo) / span * steps).round() / steps * span + lo
        return quantised @ int8_weight.double().T + bias.double()

    out = packed_linear(weight, bias, "int8-rows")(rows).double()
    other = 127 if levels == 255 else 255
    error = (out - expected(levels)).abs().max().item()
    assert error < 1e-4
    assert (out - expected(other)).abs().max().item() > 10 * error
