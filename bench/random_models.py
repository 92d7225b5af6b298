"""Full-size BLIP and CLIP architectures with random weights, saved as ordinary checkpoints.

They cost exactly what blip-image-captioning-base and clip-vit-base-patch32 cost (the cost
depends on the architecture and the number of generated tokens, not on the weights), and they
need no download. Tokenizers are built in memory with vocabularies of the real sizes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    BlipProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
)


def _blip_tokenizer(config: BlipConfig) -> BertTokenizer:
    text = config.text_config
    specials = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    specials[text.bos_token_id] = "[DEC]"
    vocab = {specials.get(i, f"w{i}"): i for i in range(text.vocab_size)}
    return BertTokenizer(vocab=vocab)


def _clip_tokenizer(config: CLIPConfig) -> CLIPTokenizer:
    chars = sorted(ByteLevel.alphabet())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    size = config.text_config.vocab_size
    tokens += [f"t{i}</w>" for i in range(size - len(tokens))]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])
    tokenizer.model_max_length = config.text_config.max_position_embeddings
    return tokenizer


def save_random_blip(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = BlipConfig()
    model = BlipForConditionalGeneration(config).eval()
    image_processor = BlipImageProcessor(size={"height": 384, "width": 384})
    BlipProcessor(image_processor, _blip_tokenizer(config)).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def save_random_clip(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = CLIPConfig()
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    CLIPProcessor(image_processor, _clip_tokenizer(config)).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
