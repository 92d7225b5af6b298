"""CLIP's activation computed in place (bot/vision/layers.py) gives transformers' answers to
the bit, so the lighter memory traffic changes no embedding."""

from __future__ import annotations

import torch
from transformers import CLIPModel
from transformers.activations import QuickGELUActivation

from bench.photos import photo
from bot.vision.clip import Embedder
from bot.vision.layers import InPlaceQuickGelu
from tests.conftest import TINY_CLIP


def test_in_place_quick_gelu_equals_transformers_to_the_bit() -> None:
    torch.manual_seed(0)
    with torch.inference_mode():
        for shape in [(3, 7), (16, 50, 3072)]:
            x = torch.randn(shape) * 4
            assert torch.equal(InPlaceQuickGelu()(x), QuickGELUActivation()(x))


def test_clip_image_embeddings_equal_transformers_model() -> None:
    """The tiny CLIP through the service's loader, float32 and unpacked, against transformers'
    own model on the same pixels."""
    embedder = Embedder.load(str(TINY_CLIP), torch.device("cpu"), torch.float32)
    modules = list(embedder.model.modules())
    assert any(type(m) is InPlaceQuickGelu for m in modules)
    assert not any(type(m) is QuickGELUActivation for m in modules)
    reference = CLIPModel.from_pretrained(TINY_CLIP, attn_implementation="sdpa").eval()
    pixels = embedder.preprocess_images([photo(64, 48, s) for s in range(4)])
    with torch.inference_mode():
        ours = embedder.predict_images(pixels)
        theirs = reference.get_image_features(pixel_values=pixels).pooler_output
    assert torch.equal(ours, theirs)
