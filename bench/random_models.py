"""Full-size BLIP, CLIP and SigLIP architectures with random weights, saved as ordinary
checkpoints.

They cost exactly what blip-image-captioning-base, clip-vit-base-patch32 and
siglip-base-patch16-224 cost (the cost depends on the architecture, the text length and the
number of generated tokens, not on the weights), and they need no download. BLIP's and CLIP's
tokenizers are built in memory with vocabularies of the real sizes; SigLIP's is a small
SentencePiece model (its texts are padded to 64 tokens whatever the vocabulary).

A text costs CLIP what its token count says, so the bench's CLIP tokenizer splits the bench's
queries as the released one does: each common word one token, each digit one token.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
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


# Words the released CLIP vocabulary holds whole ("a</w>" is id 320, "of</w>" 539, "photo</w>"
# 1125). Its pre-tokenizer splits numbers into single digits, as this one's does.
CLIP_WORDS = ["a", "photo", "of", "thing", "number", "the", "and", "with", "in", "on"]


def bpe_merges(words: list[str]) -> list[tuple[str, str]]:
    """Deterministic BPE training on ``words`` until each word is a single token.

    At each step the most frequent adjacent pair wins; ties go to the lexicographically
    smallest pair. (The tokenizers library's trainer breaks ties differently run to run.)
    """
    sequences = [[*word[:-1], word[-1] + "</w>"] for word in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter[tuple[str, str]] = Counter()
        for seq in sequences:
            counts.update(itertools.pairwise(seq))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        merged = []
        for seq in sequences:
            out: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            merged.append(out)
        sequences = merged


def _clip_tokenizer(config: CLIPConfig) -> CLIPTokenizer:
    chars = sorted(ByteLevel.alphabet())
    tokens = chars + [c + "</w>" for c in chars]
    merges = bpe_merges(CLIP_WORDS)
    known = set(tokens)
    for left, right in merges:
        if left + right not in known:
            known.add(left + right)
            tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    size = config.text_config.vocab_size
    tokens += [f"t{i}</w>" for i in range(size - len(tokens))]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
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
