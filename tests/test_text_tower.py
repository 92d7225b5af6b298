"""CLIP's and SigLIP's text towers, run by the project's own loop (bot/vision/text_tower.py),
embed texts exactly as transformers' `get_text_features` does over the same weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import CLIPModel, SiglipModel

from bot.vision import packed
from bot.vision.clip import MODELS, Embedder
from bot.vision.layers import quick_gelu_in_place
from bot.vision.text_tower import TextTower
from tests.conftest import TINY_CLIP, TINY_SIGLIP

CPU = torch.device("cpu")
TEXTS = [
    "a red circle",
    "a photo of thing number 17",
    "Ein ROTER Kreis! 🦜 und ein blaues Quadrat",
    "a very long text " * 40,  # cut at the checkpoint's limit
    "",
]


def reference(folder: Path, *, packed_weights: bool) -> CLIPModel | SiglipModel:
    """transformers' own model; with `packed_weights`, its linear layers on the same float16
    weights the product packs."""
    family = json.loads((folder / "config.json").read_text())["model_type"]
    model = MODELS[family][1].from_pretrained(folder).eval()
    if packed_weights:
        packed.pack_linears(model, "float16", skip=model.vision_model)
    return model


def assert_same_embeddings(
    embedder: Embedder, model: CLIPModel | SiglipModel, texts: list[str]
) -> None:
    """Ours as the product feeds them; transformers' as its docs do: CLIP's padded to the
    longest text, with the attention mask; SigLIP's padded to its full length, without one
    (as it was trained; a tokenizer may offer one)."""
    fed = embedder.preprocess_texts(texts)
    assert fed["input_ids"].shape[1] <= embedder.max_text_tokens
    siglip = isinstance(model, SiglipModel)
    usual = embedder.processor.tokenizer(
        texts,
        padding="max_length" if siglip else True,
        truncation=True,
        return_attention_mask=not siglip,
        return_tensors="pt",
    )
    with torch.inference_mode():
        ours = embedder.predict_texts(fed)
        theirs = model.get_text_features(**usual).pooler_output
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "packed_weights",
    [False, pytest.param(True, marks=pytest.mark.skipif(not packed.supported(), reason="fbgemm"))],
)
@pytest.mark.parametrize("folder", [TINY_CLIP, TINY_SIGLIP], ids=["clip", "siglip"])
def test_padded_texts_embed_as_transformers_embeds_them(folder: Path, packed_weights: bool) -> None:
    embedder = Embedder.load(str(folder), CPU, torch.float32, packed=packed_weights)
    assert isinstance(embedder.text_tower, torch.jit.ScriptModule)  # compiled, not as Python
    model = reference(folder, packed_weights=packed_weights)
    assert_same_embeddings(embedder, model, TEXTS)
    for text in TEXTS:
        assert_same_embeddings(embedder, model, [text])


def test_checkpoints_saved_with_the_old_end_token_id_pool_as_transformers_does(
    tmp_path: Path,
) -> None:
    """Configs saved before transformers fixed `eos_token_id` (the released OpenAI ones say
    2) pool the highest token id instead of the first end token."""
    folder = tmp_path / "clip-old-config"
    shutil.copytree(TINY_CLIP, folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["eos_token_id"] = 2
    (folder / "config.json").write_text(json.dumps(config))
    embedder = Embedder.load(str(folder), CPU, torch.float32)
    assert embedder.text_tower is not None and embedder.text_tower.eos_token_id == 2
    assert_same_embeddings(embedder, reference(folder, packed_weights=False), TEXTS)


def test_a_tokenizer_that_pads_on_the_left_still_feeds_right_padded_texts() -> None:
    """The loop needs no padding mask only because padding comes after each end token."""
    embedder = Embedder.load(str(TINY_CLIP), CPU, torch.float32)
    embedder.processor.tokenizer.padding_side = "left"
    together = embedder.predict_texts(embedder.preprocess_texts(TEXTS[:3]))
    for i, text in enumerate(TEXTS[:3]):
        alone = embedder.predict_texts(embedder.preprocess_texts([text]))
        torch.testing.assert_close(together[i : i + 1], alone, rtol=0, atol=1e-6)


@pytest.mark.skipif(not packed.supported(), reason="fbgemm")
def test_packing_keeps_the_text_weights_once() -> None:
    """The packed copies replace the float32 linear weights: neither the tower nor the model
    keeps them (for the full-size CLIP, 151 MB)."""
    embedder = Embedder.load(str(TINY_CLIP), CPU, torch.float32, packed=True)
    assert embedder.text_tower is not None
    assert not any(type(m) is nn.Linear for m in embedder.text_tower.modules())
    assert not hasattr(embedder.model, "text_model")
    assert not hasattr(embedder.model, "text_projection")


@pytest.mark.slow
@pytest.mark.parametrize("packed_weights", [False, True])
def test_the_full_size_text_tower_embeds_as_transformers_does(
    full_size_models: tuple[Path, Path], packed_weights: bool
) -> None:
    if packed_weights and not packed.supported():
        pytest.skip("fbgemm")
    _, clip = full_size_models
    embedder = Embedder.load(str(clip), CPU, torch.float32, packed=packed_weights)
    model = reference(clip, packed_weights=packed_weights)
    queries = [f"a photo of thing number {i}" for i in range(8)] + TEXTS
    assert_same_embeddings(embedder, model, queries)


@pytest.mark.parametrize(
    "packed_weights",
    [False, pytest.param(True, marks=pytest.mark.skipif(not packed.supported(), reason="fbgemm"))],
)
def test_on_a_cpu_the_tower_runs_compiled_and_equals_it_run_as_python(
    packed_weights: bool,
) -> None:
    """Compiled by TorchScript, a query's ~150 operators run without Python between them, so
    without waiting for the interpreter's lock that the event loop holds while it works."""
    embedder = Embedder.load(str(TINY_CLIP), CPU, torch.float32, packed=packed_weights)
    assert isinstance(embedder.text_tower, torch.jit.ScriptModule)
    model = CLIPModel.from_pretrained(TINY_CLIP).eval()
    quick_gelu_in_place(model)
    as_python = TextTower(model, "float16" if packed_weights else None)
    fed = embedder.preprocess_texts(TEXTS)["input_ids"]
    with torch.inference_mode():
        for _ in range(3):  # TorchScript optimises after its first runs: each must be equal
            assert torch.equal(embedder.text_tower(fed), as_python(fed))


def test_the_compiled_tower_is_optimised_at_load() -> None:
    """TorchScript profiles a compiled module's first run and optimises on its second: the
    load runs both, so the first `!find` runs the optimised graph (no profiling nodes)."""
    embedder = Embedder.load(str(TINY_CLIP), CPU, torch.float32)
    embedder.predict_texts(embedder.preprocess_texts(["a red circle"]))
    ran = torch.jit.last_executed_optimized_graph()
    assert "aten::layer_norm" in str(ran)  # the tower's graph, not another one
    assert "prim::profile" not in str(ran)
