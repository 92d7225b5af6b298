"""CLIP embeddings in four steps: load, preprocess, predict, postprocess.

Every embedding comes out L2-normalised, so the dot product of two is their cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, CLIPModel, CLIPProcessor

from bot.vision.checkpoints import from_pretrained, locate
from bot.vision.pixels import PixelPipeline


class Embedder:
    """Any CLIP checkpoint: images and texts into one normalised embedding space."""

    setting = "SEARCH_MODEL"

    def __init__(
        self,
        processor: CLIPProcessor,
        model: CLIPModel,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.processor = processor
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)
        self.dim = int(model.config.projection_dim)
        self.pixels = PixelPipeline.from_processor(processor.image_processor)

    @classmethod
    def load(cls, model_id: str, device: torch.device, dtype: torch.dtype) -> Embedder:
        checkpoint = locate(model_id, cls.setting, "clip")
        processor = from_pretrained(CLIPProcessor, checkpoint)
        model = from_pretrained(CLIPModel, checkpoint, dtype=dtype, attn_implementation="sdpa")
        model.to(device).eval()
        return cls(processor, model, device, dtype)

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.pixels(images)

    def preprocess_texts(self, texts: Sequence[str]) -> BatchFeature:
        # The checkpoint's own limit, not CLIP's usual 77: small or long-context models differ.
        return self.processor.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_text_tokens,
            return_tensors="pt",
        )

    def predict_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            pixels = pixel_values.to(self.device, self.dtype)
            return self.model.get_image_features(pixel_values=pixels).pooler_output

    def predict_texts(self, tokens: BatchFeature) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            ).pooler_output

    @staticmethod
    def postprocess(features: torch.Tensor) -> np.ndarray:
        vectors = features.float()
        vectors = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return vectors.cpu().numpy().astype(np.float32, copy=False)
