"""BLIP captioning in four steps: load, preprocess, predict, postprocess.

Predicting is split for iteration-level batching: `join` encodes newcomers' images together
and adds their sequences to a running batch (bot/vision/running.py), whose steps decode them
with BLIP's own weights (bot/vision/decoder.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature, BlipForConditionalGeneration, BlipProcessor
from transformers.models.blip.modeling_blip import BlipAttention

from bot.vision.checkpoints import Checkpoint, from_pretrained, locate
from bot.vision.cores import Cores
from bot.vision.decoder import Slots, TextDecoder
from bot.vision.graphed import FixedSteps, fixed_length
from bot.vision.packed import (
    cache_dtype,
    drop_linears,
    own_memory,
    pack_image_encoder,
    step_kind,
)
from bot.vision.pixels import PixelPipeline
from bot.vision.running import Decoding, RunningBatch


@dataclass
class CaptionInputs:
    """One request: its pixels, and the prompt tokens fed before the caption (bos first)."""

    pixel_values: torch.Tensor  # [1, channels, height, width]
    prompt: list[int]


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
        *,
        packed: bool = False,
        cores: Cores | None = None,
    ) -> None:
        """`cores`: on a CPU, workers that run a batch's images side by side."""
        self.processor = processor
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_tokens = max_tokens
        self.max_positions = int(model.config.text_config.max_position_embeddings)
        self.pixels = PixelPipeline.from_processor(processor.image_processor)
        text = model.config.text_config
        self.start_token = int(text.bos_token_id)
        self.stop_token = int(text.sep_token_id)
        self.cores = cores or Cores(1)
        self.decoder = (
            TextDecoder(
                model.text_decoder, steps=step_kind(), cross_dtype=cache_dtype(), cores=self.cores
            )
            if packed
            else TextDecoder(model.text_decoder, cores=self.cores)
        )
        vision = model.config.vision_config
        self.image_tokens = (int(vision.image_size) // int(vision.patch_size)) ** 2 + 1
        self.decoder.warm_up(self.image_tokens)
        self._fixed: FixedSteps | None = None

    @classmethod
    def find(cls, model_id: str) -> Checkpoint:
        """The BLIP checkpoint CAPTION_MODEL names, found and checked; no weights are read."""
        return locate(model_id, cls.setting, "blip")

    @classmethod
    def load(
        cls,
        model_id: str,
        device: torch.device,
        dtype: torch.dtype,
        max_tokens: int,
        *,
        packed: bool = False,
        cores: Cores | None = None,
    ) -> Captioner:
        """With `packed`, the vision encoder runs on int8 weights, the decode steps on int8
        or float16 ones, whichever this CPU runs faster (bot/vision/packed.py)."""
        checkpoint = cls.find(model_id)
        processor = from_pretrained(BlipProcessor, checkpoint)
        model = from_pretrained(BlipForConditionalGeneration, checkpoint, dtype=dtype)
        use_sdpa_attention(model)
        model.to(device).eval()
        if packed:
            # int8 throughout the vision encoder: 0.65 s per image against 0.75 with its
            # attention projections left float32, and the greedy tokens still agree with
            # float32's (tests/test_precision.py).
            pack_image_encoder(model.vision_model, int8_attention=True)
        captioner = cls(processor, model, device, dtype, max_tokens, packed=packed, cores=cores)
        if packed:
            # The decode loop packed its own copies: the text decoder's float32 linear
            # layers go before the rest is copied out of the checkpoint's file.
            drop_linears(model.text_decoder)
            own_memory(model)
        return captioner

    def preprocess(self, image: Image.Image, prompt: str | None = None) -> CaptionInputs:
        """Runs on a prep thread, so it stays on the CPU and in float32: the model thread alone
        touches the GPU (a copy from another thread would break the capture of a CUDA graph)
        and runs torch's parallel kernels. A conversion to bfloat16 here gave each prep thread
        a team of OpenMP threads; with more of them than cores, libgomp stops spin-waiting
        between parallel regions, and decode steps took 36-40 ms instead of 24 (2 cores)."""
        return CaptionInputs(self.pixels([image]), self.prompt_tokens(prompt))

    def prompt_tokens(self, prompt: str | None) -> list[int]:
        """What BLIP's `generate()` feeds: the tokenised prompt with its first token replaced
        by bos and its last (the separator) dropped; bos alone without a prompt."""
        if not prompt:
            return [self.start_token]
        text: BatchFeature = self.processor.tokenizer(
            prompt, truncation=True, max_length=max(2, self.max_positions // 2)
        )
        ids = [int(i) for i in text["input_ids"][:-1]]
        return [self.start_token, *ids[1:]]

    def running_batch(self, capacity: int, spare: Slots | None = None) -> RunningBatch:
        """An empty batch for up to `capacity` captions, starting from the cache `spare` of an
        earlier one where it fits. On a GPU its steps have fixed shapes over one cache kept for
        the model's lifetime, replayed as CUDA graphs."""
        if self.device.type != "cuda":
            return RunningBatch(self.decoder, self.stop_token, spare=spare)
        fixed = self._fixed
        if fixed is None or fixed.slots.capacity < capacity:
            length = fixed_length(self.max_positions, self.max_tokens)
            fixed = self._fixed = FixedSteps(self.decoder, capacity, length, self.image_tokens)
        return RunningBatch(self.decoder, self.stop_token, fixed)

    @torch.inference_mode()
    def join(self, batch: RunningBatch, requests: Sequence[tuple[int, CaptionInputs]]) -> None:
        """Encodes the requests' images together (`encode`) and adds their sequences to
        `batch`."""
        pixels = torch.cat([inputs.pixel_values for _, inputs in requests])
        pixels = pixels.to(self.device, self.dtype)
        image_embeds = self.encode(pixels)
        least = int(self.model.text_decoder.generation_config.min_new_tokens or 0)
        sequences = [
            # A small checkpoint may have fewer positions than the configured caption length.
            Decoding(ticket, list(inputs.prompt), self._limit(inputs.prompt), least)
            for ticket, inputs in requests
        ]
        batch.join(sequences, image_embeds)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """One batch on a GPU. On a CPU image by image: a batch's activations (577 x 3072
        floats per image in each feed-forward layer) were too big for the allocator to keep,
        and a batch of 8 page-faulted 1.7 GB of fresh memory into every pass; one at a time
        none (int8 weights 274 -> 206 ms per image, float32 488 -> 432, batches of 8 on a
        2-core Intel Xeon). Each image still gives hundreds of rows to every weight, and
        several run side by side, one per core (bot/vision/cores.py)."""
        if self.device.type == "cuda":
            return self.model.vision_model(pixel_values=pixels)[0]
        encoder = self.model.vision_model
        return torch.cat(self.cores.map(lambda one: encoder(pixel_values=one)[0], pixels.split(1)))

    def _limit(self, prompt: list[int]) -> int:
        return max(1, min(self.max_tokens, self.max_positions - len(prompt)))

    def postprocess(self, token_ids: Sequence[list[int]]) -> list[str]:
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
