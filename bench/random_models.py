"""Full-size BLIP, CLIP and SigLIP architectures with random weights, saved as ordinary
checkpoints.

They cost exactly what blip-image-captioning-base, clip-vit-base-patch32 and
siglip-base-patch16-224 cost (the cost depends on the architecture, the text length and the
number of generated tokens, not on the weights), and they need no download. BLIP's and CLIP's
tokenizers are built in memory with vocabularies of the real sizes; SigLIP's is a small
SentencePiece model (its texts are padded to 64 tokens whatever the vocabulary).
"""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece
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
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipProcessor,
    SiglipTokenizer,
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


def word_tokenizer(sentences: list[str], folder: Path, max_length: int) -> SiglipTokenizer:
    """A SiglipTokenizer over a word-level SentencePiece model trained on `sentences` and saved
    in `folder`: each of their words one piece, bytes for any other text."""
    words = {word for sentence in sentences for word in sentence.split()}
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 10),
        model_writer=model,
        model_type="word",
        vocab_size=256 + 2 + len(words),
        byte_fallback=True,
        character_coverage=1.0,
        num_threads=1,
        unk_id=0,
        eos_id=1,
        bos_id=-1,
        pad_id=-1,
        unk_piece="<unk>",
        eos_piece="</s>",
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    return SiglipTokenizer(vocab_file=str(folder / "spiece.model"), model_max_length=max_length)


def save_random_siglip(folder: Path, seed: int = 0) -> Path:
    """siglip-base-patch16-224: ViT-B/16 at 224 px, a 12-layer text tower over 64 tokens."""
    torch.manual_seed(seed)
    config = SiglipConfig(text_config={"bos_token_id": None, "eos_token_id": 1, "pad_token_id": 1})
    model = SiglipModel(config).eval()
    with torch.no_grad():  # the released checkpoint's order of magnitude
        model.logit_scale.fill_(4.7)
        model.logit_bias.fill_(-12.9)
    image_processor = SiglipImageProcessor(size={"height": 224, "width": 224})
    tokenizer = word_tokenizer(["a photo of thing number the and with in on"], folder, 64)
    SiglipProcessor(image_processor, tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
