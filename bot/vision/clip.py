"""CLIP and SigLIP embeddings in four steps: load, preprocess, predict, postprocess.

Every embedding comes out L2-normalised, so the dot product of two is their cosine similarity.
The family is the checkpoint's own (`model_type` in its config.json); both give one embedding
per image and per text, and differ in how texts are fed and what a text's score means
(bot/vision/scores.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import (
    BatchFeature,
    CLIPModel,
    CLIPProcessor,
    SiglipModel,
    SiglipProcessor,
)

from bot.vision import cpu
from bot.vision.checkpoints import Checkpoint, from_pretrained, locate
from bot.vision.kernels import compiled, warm_up
from bot.vision.layers import quick_gelu_in_place
from bot.vision.packed import own_memory, pack_linears, pack_search_encoder
from bot.vision.pixels import PixelPipeline
from bot.vision.scores import TextScores
from bot.vision.text_tower import TextTower

MODELS = {"clip": (CLIPProcessor, CLIPModel), "siglip": (SiglipProcessor, SiglipModel)}
# Image tokens per image-encoder call on a CPU (see `predict_images`).
CPU_ROWS = 1024


class Embedder:
    """Any CLIP or SigLIP checkpoint: images and texts into one normalised embedding space."""

    setting = "SEARCH_MODEL"

    def __init__(
        self,
        processor: CLIPProcessor | SiglipProcessor,
        model: CLIPModel | SiglipModel,
        device: torch.device,
        dtype: torch.dtype,
        text_tower: TextTower,
    ) -> None:
        self.processor = processor
        self.text_tower = text_tower
        self.model = model
        self.device = device
        self.dtype = dtype
        config = model.config
        self.family = str(config.model_type)
        self.max_text_tokens = int(config.text_config.max_position_embeddings)
        if self.family == "siglip":
            self.dim = int(config.text_config.projection_size)
            self.scores = TextScores(
                "siglip", model.logit_scale.exp().item(), model.logit_bias.item()
            )
        else:
            self.dim = int(config.projection_dim)
            self.scores = TextScores("clip")
        self.pixels = PixelPipeline.from_processor(processor.image_processor)
        vision = config.vision_config
        tokens = (int(vision.image_size) // int(vision.patch_size)) ** 2
        self.images_per_call = max(1, CPU_ROWS // tokens) if device.type == "cpu" else None

    @classmethod
    def find(cls, model_id: str) -> Checkpoint:
        """The checkpoint SEARCH_MODEL names, found and checked; no weights are read."""
        return locate(model_id, cls.setting, *MODELS)

    @classmethod
    def load(
        cls, model_id: str, device: torch.device, dtype: torch.dtype, *, packed: bool = False
    ) -> Embedder:
        """With `packed`, the image encoder runs on int8 weights (all its linear layers where
        the CPU has VNNI, else its feed-forward layers), the text encoder and the projections
        (a few rows per weight) on float16 ones (bot/vision/packed.py)."""
        checkpoint = cls.find(model_id)
        processor_class, model_class = MODELS[checkpoint.model_type]
        processor = from_pretrained(processor_class, checkpoint)
        model = from_pretrained(model_class, checkpoint, dtype=dtype, attn_implementation="sdpa")
        model.to(device).eval()
        quick_gelu_in_place(model)
        tower = TextTower(model, "float16" if packed else None)
        if packed:
            pack_search_encoder(model.vision_model, per_token=cpu.has_vnni())
            pack_linears(model, "float16", skip=model.vision_model)
            own_memory(model)
            own_memory(tower)
        if device.type != "cpu":
            return cls(processor, model, device, dtype, tower)
        embedder = cls(processor, model, device, dtype, compiled(tower))  # see text_tower.py
        warm_up(lambda: embedder.predict_texts(embedder.preprocess_texts(["a photo"])))
        return embedder

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.pixels(images)

    def preprocess_texts(self, texts: Sequence[str]) -> BatchFeature:
        """Texts as given, in any language. The checkpoint's own length limit, not CLIP's
        usual 77: small or long-context models differ. SigLIP was trained on texts padded to
        that limit and without an attention mask (its text tower pools the last position), so
        it is fed exactly so. CLIP pools its end token, so padding to the longest is enough,
        on the right, where causal attention never sees it (bot/vision/text_tower.py)."""
        siglip = self.family == "siglip"
        return self.processor.tokenizer(
            list(texts),
            padding="max_length" if siglip else True,
            padding_side=None if siglip else "right",
            truncation=True,
            max_length=self.max_text_tokens,
            return_attention_mask=False,
            return_tensors="pt",
        )

    def predict_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """On a CPU a batch runs in parts of about `CPU_ROWS` tokens: SigLIP ViT-B/16 (196
        tokens an image, int8 weights, 2-core AMD EPYC Zen 5) took 59-60 ms per image in parts
        of 3 to 6 images against 111 in one call of 16 (80 in parts of 8; medians of five
        interleaved rounds), whose feed-forward layers made 39 MB of activations each (3,136 x
        3,072 floats): fresh memory faulted in at every layer, and no longer cache-sized. CLIP
        ViT-B/32 (50 tokens) runs batches of 16 (800 tokens) whole, as before; in parts of 4 it
        took 11.7 against 11.2 ms."""
        with torch.inference_mode():
            pixels = pixel_values.to(self.device, self.dtype)
            parts = [pixels] if self.images_per_call is None else pixels.split(self.images_per_call)
            features = [self.model.get_image_features(pixel_values=p).pooler_output for p in parts]
            return features[0] if len(features) == 1 else torch.cat(features)

    def predict_texts(self, tokens: BatchFeature) -> torch.Tensor:
        with torch.inference_mode():
            return self.text_tower(tokens["input_ids"].to(self.device))

    @staticmethod
    def postprocess(features: torch.Tensor) -> np.ndarray:
        vectors = features.float()
        vectors = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return vectors.cpu().numpy().astype(np.float32, copy=False)
