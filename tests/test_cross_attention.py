"""The decode step's cross-attention: written out on a CPU, torch's fused kernel on a GPU
(bot/vision/decoder.py, `Step.cross_attention`). Both are tested here on the CPU, so the GPU's
branch is checked on machines without one too: the same logits, and the same next tokens."""

from __future__ import annotations

import pytest
import torch

from bench.photos import photo
from bot.vision.blip import Captioner
from bot.vision.decoder import Step, TextDecoder
from tests.conftest import TINY_BLIP
from tests.test_step_weights import first_step

# bfloat16 keys and values round each score's inputs; the fused kernel rounds elsewhere.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


@pytest.mark.parametrize("cache", [torch.float32, torch.bfloat16])
def test_written_out_cross_attention_gives_the_fused_kernels_logits(cache: torch.dtype) -> None:
    captioner = Captioner.load(str(TINY_BLIP), torch.device("cpu"), torch.float32, 30)
    model = captioner.model.text_decoder
    written_out = TextDecoder(model, cross_dtype=cache)
    fused = TextDecoder(model, cross_dtype=cache)
    fused.maths = Step(model, None, cache, written_out=False)
    fused._run = fused.maths
    assert written_out.maths.written_out
    with torch.inference_mode():
        pixels = torch.cat([captioner.preprocess(photo(64, 48, s)).pixel_values for s in range(4)])
        embeds = captioner.model.vision_model(pixel_values=pixels)[0]
        tokens = [captioner.start_token, 5, 7, captioner.start_token]
        ours = first_step(written_out, embeds, tokens)
        theirs = first_step(fused, embeds, tokens)
    assert ours.abs().max() > 1  # logits worth comparing
    torch.testing.assert_close(ours, theirs, rtol=0, atol=TOLERANCE[cache])
    assert torch.equal(ours.argmax(dim=-1), theirs.argmax(dim=-1))
