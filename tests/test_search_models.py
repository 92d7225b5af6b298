"""Both search model families, CLIP and SigLIP, through the product's own loading path: the
same retrieval, precision and batching checks for each, and what each family's score means."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPModel, CLIPProcessor, SiglipModel, SiglipProcessor

from bot.vision import clip, cpu
from bot.vision.checkpoints import ModelLoadError
from bot.vision.clip import Embedder
from bot.vision.packed import pack_search_encoder
from bot.vision.scores import COSINE, TextScores
from bot.vision.service import VisionService
from bot.workers import Workers
from tests.conftest import SEARCH_MODELS, TINY_SIGLIP, tiny_settings
from tests.shapes import CLASSES, caption_of, draw_shape

CPU = torch.device("cpu")


async def started(family: str, tmp_path: Path, **env: str) -> VisionService:
    settings = tiny_settings(SEARCH_MODEL=str(SEARCH_MODELS[family]), DATA_DIR=str(tmp_path), **env)
    vision = VisionService(settings, Workers())
    await vision.start()
    return vision


async def stopped(vision: VisionService) -> None:
    await vision.close()
    vision.workers.shutdown()


@pytest.fixture(params=sorted(SEARCH_MODELS))
async def search(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VisionService]:
    """The service with each family's tiny model, in the dtype `auto` chooses here."""
    vision = await started(request.param, tmp_path)
    yield vision
    await stopped(vision)


def top_three(scores: np.ndarray) -> np.ndarray:
    """Each row's three best columns, best first: a text's top three images."""
    return scores.argsort(axis=1)[:, ::-1][:, :3]


def shapes(seed: int) -> list:
    rng = random.Random(seed)
    return [draw_shape(rng, colour, shape, rng.randint(64, 512)) for colour, shape in CLASSES]


def test_the_family_is_the_checkpoints_own() -> None:
    siglip = Embedder.load(str(TINY_SIGLIP), CPU, torch.float32)
    model = siglip.model
    assert isinstance(model, SiglipModel) and siglip.family == "siglip"
    assert siglip.scores == TextScores(
        "siglip", model.logit_scale.exp().item(), model.logit_bias.item()
    )
    clip = Embedder.load(str(SEARCH_MODELS["clip"]), CPU, torch.float32)
    assert isinstance(clip.model, CLIPModel) and clip.scores == COSINE


async def test_ranks_the_right_image_first_for_every_class(search: VisionService) -> None:
    image_vectors = await search.embed_images(shapes(77))
    text_vectors = await search.embed_text([caption_of(c, s) for c, s in CLASSES])
    assert np.allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-5)
    scores = text_vectors @ image_vectors.T
    assert list(scores.argmax(axis=1)) == list(range(len(CLASSES)))
    assert list(scores.argmax(axis=0)) == list(range(len(CLASSES)))


async def test_any_text_is_embedded_within_the_model_limit(search: VisionService) -> None:
    texts = ["a red square " * 200, "🦜 @everyone <script>", "", "ein roter Kreis", "赤い丸"]
    vectors = await search.embed_text(texts)
    assert vectors.shape[0] == len(texts) and np.isfinite(vectors).all()


async def test_batched_embeddings_equal_one_at_a_time(search: VisionService) -> None:
    images = shapes(5)
    texts = [caption_of(c, s) for c, s in CLASSES]
    together = await asyncio.gather(
        search.embed_images(images), *(search.embed_text([t]) for t in texts)
    )
    alone_images = np.concatenate([await search.embed_images([im]) for im in images])
    assert search.scheduler.stats["text"].mean > 1, "the texts never shared a batch"
    assert np.abs(together[0] - alone_images).max() <= 1e-5
    alone_texts = np.concatenate([await search.embed_text([t]) for t in texts])
    assert np.abs(np.concatenate(together[1:]) - alone_texts).max() <= 1e-5


@pytest.mark.parametrize("family", sorted(SEARCH_MODELS))
async def test_auto_dtype_keeps_the_rankings_of_float32(family: str, tmp_path: Path) -> None:
    services = [await started(family, tmp_path, DTYPE=d) for d in ("float32", "auto")]
    try:
        texts = [caption_of(c, s) for c, s in CLASSES]
        images = shapes(12)
        ranks = []
        for vision in services:
            scores = (await vision.embed_text(texts)) @ (await vision.embed_images(images)).T
            ranks.append(top_three(scores))
        assert (ranks[0] == ranks[1]).all()
    finally:
        for vision in services:
            await stopped(vision)


@pytest.mark.parametrize("per_token", [True, False], ids=["per-token", "per-image"])
@pytest.mark.parametrize("family", sorted(SEARCH_MODELS))
def test_both_int8_image_encoders_keep_the_rankings_and_ignore_the_batch(
    family: str, per_token: bool
) -> None:
    """Both ways of packing an image encoder, whichever this CPU would choose: the top three
    images for each text are float32's, and an image's embedding is the same alone."""
    if per_token and not cpu.has_vnni():
        # Without VNNI fbgemm takes 7 bits (see packed.py), and Embedder.load packs per image.
        pytest.skip("per-token int8 is chosen only where VNNI gives it 8 bits")
    embedder = Embedder.load(str(SEARCH_MODELS[family]), CPU, torch.float32)
    texts = embedder.preprocess_texts([caption_of(c, s) for c, s in CLASSES])
    text_vectors = embedder.postprocess(embedder.predict_texts(texts))
    pixels = embedder.preprocess_images(shapes(12))

    def image_vectors(batch: torch.Tensor) -> np.ndarray:
        return embedder.postprocess(embedder.predict_images(batch))

    exact = image_vectors(pixels)
    pack_search_encoder(embedder.model.vision_model, per_token=per_token)
    packed = image_vectors(pixels)
    ranks = [top_three(text_vectors @ v.T) for v in (exact, packed)]
    assert (ranks[0] == ranks[1]).all()
    alone = np.concatenate([image_vectors(pixels[i : i + 1]) for i in range(len(pixels))])
    assert np.abs(alone - packed).max() <= 1e-5


@pytest.mark.parametrize("family", sorted(SEARCH_MODELS))
def test_a_big_batch_runs_in_parts_on_a_cpu_with_each_images_embedding(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image encoder takes about `CPU_ROWS` tokens a call (bot/vision/clip.py): with room
    for three images, a batch of seven runs as three calls, its embeddings those of one."""
    whole = Embedder.load(str(SEARCH_MODELS[family]), CPU, torch.float32, packed=True)
    vision = whole.model.config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2
    monkeypatch.setattr(clip, "CPU_ROWS", 3 * tokens + tokens // 2)
    parts = Embedder.load(str(SEARCH_MODELS[family]), CPU, torch.float32, packed=True)
    calls = []
    encode = parts.model.get_image_features
    monkeypatch.setattr(
        parts.model, "get_image_features", lambda **kw: calls.append(1) or encode(**kw)
    )
    pixels = whole.preprocess_images(shapes(7))[:7]
    one_call = whole.postprocess(whole.predict_images(pixels))
    in_parts = parts.postprocess(parts.predict_images(pixels))
    assert len(calls) == 3
    assert np.abs(in_parts - one_call).max() <= 1e-5


@pytest.mark.parametrize("family", sorted(SEARCH_MODELS))
async def test_scores_equal_what_transformers_computes(family: str, tmp_path: Path) -> None:
    """CLIP: the cosine behind `logits_per_image`. SigLIP: the probability shown is the
    sigmoid of `logits_per_image`, its text padded to the maximum length as it was trained."""
    folder = SEARCH_MODELS[family]
    vision = await started(family, tmp_path, DTYPE="float32")
    try:
        images = shapes(11)
        meaning = await vision.text_scores()
        image_vectors = await vision.embed_images(images)
        for colour, shape in CLASSES[::3]:
            query = caption_of(colour, shape)
            cosines = image_vectors @ (await vision.embed_text([query]))[0]
            shown = np.array([meaning.shown(float(c)) for c in cosines])
            with torch.inference_mode():
                if family == "siglip":
                    processor = SiglipProcessor.from_pretrained(folder)
                    model = SiglipModel.from_pretrained(folder).eval()
                    ids = processor.tokenizer([query], padding="max_length", return_tensors="pt")
                    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
                    logits = model(input_ids=ids["input_ids"], pixel_values=pixels)
                    reference = torch.sigmoid(logits.logits_per_image[:, 0]).numpy()
                else:
                    processor = CLIPProcessor.from_pretrained(folder)
                    model = CLIPModel.from_pretrained(folder).eval()
                    inputs = processor(text=[query], images=images, return_tensors="pt")
                    logits = model(**inputs).logits_per_image[:, 0]
                    reference = (logits / model.logit_scale.exp()).numpy()
            assert int(shown.argmax()) == int(reference.argmax())
            assert np.abs(shown - reference).max() <= 1e-4
    finally:
        await stopped(vision)


async def test_siglip_says_no_good_match_honestly(tmp_path: Path) -> None:
    """The shape asked for is among the images: it alone is likely; when it is not, none is."""
    vision = await started("siglip", tmp_path)
    try:
        meaning = await vision.text_scores()
        images = shapes(21)
        image_vectors = await vision.embed_images(images)
        for label, (colour, shape) in enumerate(CLASSES):
            cosines = image_vectors @ (await vision.embed_text([caption_of(colour, shape)]))[0]
            shown = [meaning.shown(float(c)) for c in cosines]
            assert shown[label] > 0.5, (colour, shape, shown[label])
            others = shown[:label] + shown[label + 1 :]
            assert max(others) < meaning.weak_below, (colour, shape, max(others))
    finally:
        await stopped(vision)


def test_siglip_texts_are_fed_as_trained_and_passed_unchanged() -> None:
    siglip = Embedder.load(str(TINY_SIGLIP), CPU, torch.float32)
    texts = ["a red circle", "Ein ROTER Kreis! 🦜"]
    fed = siglip.preprocess_texts(texts)
    assert set(fed) == {"input_ids"}  # no attention mask: SigLIP was trained without one
    assert fed["input_ids"].shape == (2, siglip.max_text_tokens)
    tokenizer = siglip.processor.tokenizer
    for text, ids in zip(texts, fed["input_ids"].tolist(), strict=True):
        again = tokenizer(text, padding="max_length", truncation=True, max_length=len(ids))
        assert ids == again["input_ids"]
    assert tokenizer.decode(fed["input_ids"][0], skip_special_tokens=True) == texts[0]


@pytest.mark.parametrize(
    ("scores", "cosine", "text"),
    [
        (COSINE, 0.3141, "0.31"),
        (COSINE, -0.05, "-0.05"),
        (COSINE, -0.001, "0.00"),
        (TextScores("siglip", 10.0, -10.0), 1.0, "50%"),
        (TextScores("siglip", 10.0, -10.0), 0.5, "<1%"),  # sigmoid(-5) = 0.0067
        (TextScores("siglip", 10.0, -10.0), 0.7, "5%"),  # sigmoid(-3) = 0.047
        (TextScores("siglip", 100.0, -10.0), 0.4, "100%"),
    ],
)
def test_what_each_family_shows(scores: TextScores, cosine: float, text: str) -> None:
    assert scores.text(scores.shown(cosine)) == text


@pytest.mark.parametrize(
    ("scores", "cosine", "weak"),
    [
        (COSINE, 0.1996, False),  # reads "0.20"
        (COSINE, 0.194, True),  # reads "0.19"
        (TextScores("siglip", 10.0, -10.0), 0.7059, False),  # sigmoid(-2.941) = 0.0501: "5%"
        (TextScores("siglip", 10.0, -10.0), 0.7044, False),  # 0.0496 reads "5%" too
        (TextScores("siglip", 10.0, -10.0), 0.69, True),  # 0.043: "4%"
        (TextScores("siglip", 10.0, -10.0), 0.5, True),  # 0.0067: "<1%"
    ],
)
def test_weak_match_is_judged_on_the_number_as_it_reads(
    scores: TextScores, cosine: float, weak: bool
) -> None:
    shown = scores.shown(cosine)
    assert scores.weak(shown, scores.weak_below) is weak, scores.text(shown)


def test_weak_match_defaults_by_family() -> None:
    assert COSINE.weak_below == 0.2
    assert TextScores("siglip", 10.0, -10.0).weak_below == 0.05


def test_a_checkpoint_of_another_family_is_refused_in_one_line(tmp_path: Path) -> None:
    naflex = tmp_path / "siglip2-naflex"
    naflex.mkdir()
    (naflex / "config.json").write_text('{"model_type": "siglip2"}')
    with pytest.raises(ModelLoadError) as refused:
        Embedder.load(str(naflex), CPU, torch.float32)
    assert str(refused.value) == (
        f"SEARCH_MODEL: '{naflex}' is a 'siglip2' checkpoint, not a CLIP or SigLIP one. "
        "Fix: set SEARCH_MODEL to a CLIP or SigLIP checkpoint"
    )
