"""The benchmark's random-weight checkpoints cost what the released ones cost: same
architectures, and texts split into as many tokens."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPTokenizer


def test_the_bench_clip_splits_its_queries_as_the_released_tokenizer_does(
    full_size_models: tuple[Path, Path],
) -> None:
    # openai/clip-vit-base-patch32's tokenizer.json holds "a</w>", "photo</w>" and "of</w>"
    # whole, and its pre-tokenizer splits numbers into digits: <start> a photo of thing
    # number 1 7 <end>. A character-level split had made it 22 tokens, 2.5x the cost.
    tokenizer = CLIPTokenizer.from_pretrained(full_size_models[1])
    assert tokenizer.tokenize("a photo of thing number 17") == [
        "a</w>",
        "photo</w>",
        "of</w>",
        "thing</w>",
        "number</w>",
        "1</w>",
        "7</w>",
    ]
    assert len(tokenizer("a photo of thing number 17").input_ids) == 9
