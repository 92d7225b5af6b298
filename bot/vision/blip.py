"""BLIP captioning in four steps: load, preprocess, predict, postprocess."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature, BlipForConditionalGeneration, BlipProcessor
from transformers.models.blip.modeling_blip import BlipAttention

from bot.vision.checkpoints import from_pretrained, locate
from bot.vision.pixels import PixelPipeline


@dataclass
class CaptionInputs:
    pixel_values: torch.Tensor
    input_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None

    @staticmethod
    def merge(parts: Sequence[CaptionInputs]) -> CaptionInputs:
        """One batch from requests with the same prompt (BLIP cannot mix prompt lengths)."""
        if len(parts) == 1:
            return parts[0]

        def cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
            present = [t for t in tensors if t is not None]
            return torch.cat(present) if present else None

        return CaptionInputs(
            torch.cat([p.pixel_values for p in parts]),
            cat([p.input_ids for p in parts]),
            cat([p.attention_mask for p in parts]),
        )


class Captioner:
    """Any BLIP checkpoint; greedy decoding, at most `max_tokens` new tokens."""

    setting = "CAPTION_MODEL"

    def __init__(
        self,
        processor: BlipProcessor,
        model: BlipForConditionalGeneration,
        device: torch.device,
        dtype: torch.dtype,
        max_tokens: int,
    ) -> None:
        self.processor = processor
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_tokens = max_tokens
        self.max_positions = int(model.config.text_config.max_position_embeddings)
        self.pixels = PixelPipeline.from_processor(processor.image_processor)

    @classmethod
    def load(
        cls, model_id: str, device: torch.device, dtype: torch.dtype, max_tokens: int
    ) -> Captioner:
        checkpoint = locate(model_id, cls.setting, "blip")
        processor = from_pretrained(BlipProcessor, checkpoint)
        model = from_pretrained(BlipForConditionalGeneration, checkpoint, dtype=dtype)
        use_sdpa_attention(model)
        model.to(device).eval()
        return cls(processor, model, device, dtype, max_tokens)

    def preprocess(self, images: Sequence[Image.Image], prompt: str | None = None) -> CaptionInputs:
        """Pixel tensors for a batch; a prompt is shared by the whole batch (BLIP needs that)."""
        pixel_values = self.pixels(images).to(self.device, self.dtype)
        if not prompt:
            return CaptionInputs(pixel_values, None, None)
        text: BatchFeature = self.processor.tokenizer(
            [prompt] * len(images),
            return_tensors="pt",
            truncation=True,
            max_length=max(2, self.max_positions // 2),
        )
        return CaptionInputs(
            pixel_values,
            text["input_ids"].to(self.device),
            text["attention_mask"].to(self.device),
        )

    def predict(self, inputs: CaptionInputs) -> torch.Tensor:
        prompt_length = 0 if inputs.input_ids is None else inputs.input_ids.shape[1] - 1
        # A small checkpoint may have fewer positions than the configured caption length.
        new_tokens = max(1, min(self.max_tokens, self.max_positions - prompt_length))
        with torch.inference_mode():
            return self.model.generate(
                pixel_values=inputs.pixel_values,
                input_ids=inputs.input_ids,
                attention_mask=inputs.attention_mask,
                max_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
            )

    def postprocess(self, token_ids: torch.Tensor) -> list[str]:
        texts = self.processor.batch_decode(token_ids, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]


class SdpaBlipAttention(nn.Module):
    """BLIP's vision attention through torch's fused kernel; transformers writes it out by hand
    (softmax of an explicit score matrix), which made the vision encoder ~25% slower on a CPU.
    The same weights (shared with the module it replaces) and the same maths: the attention
    probabilities are simply not materialised."""

    def __init__(self, original: BlipAttention) -> None:
        super().__init__()
        self.qkv = original.qkv
        self.projection = original.projection
        self.num_heads = original.num_heads
        self.head_dim = original.head_dim
        self.scale = original.scale

    def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        batch, tokens, width = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        context = nn.functional.scaled_dot_product_attention(query, key, value, scale=self.scale)
        return self.projection(context.transpose(1, 2).reshape(batch, tokens, width)), None


def use_sdpa_attention(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is BlipAttention:
                parent.register_module(name, SdpaBlipAttention(child))
