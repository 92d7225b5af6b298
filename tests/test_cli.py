"""`python -m bot caption|find` as a user runs it: a subprocess, real files, fixed formats."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.animations import gif_with_a_blank_start
from tests.conftest import SEARCH_MODELS, TINY_BLIP, TINY_CLIP, fresh_samples
from tests.image_corpus import build_corpus
from tests.shapes import CLASSES, caption_of, draw_shape

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "CAPTION_MODEL": str(TINY_BLIP),
        "SEARCH_MODEL": str(TINY_CLIP),
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_caption_prints_path_tab_caption(tmp_path: Path) -> None:
    paths, expected = [], {}
    for i, (data, fmt, caption) in enumerate(fresh_samples(seed=4242, count=48)):
        path = f"img{i:02d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        (tmp_path / path).write_bytes(data)
        paths.append(path)
        expected[path] = caption
    result = run_cli("caption", *paths, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == paths
    correct = sum(line.split("\t", 1)[1] == expected[line.split("\t")[0]] for line in lines)
    assert correct >= 47, f"{correct}/48 exact captions"


def test_caption_with_prompt(tmp_path: Path) -> None:
    draw_shape(random.Random(8), "yellow", "circle", 300).save(tmp_path / "y.png")
    result = run_cli("caption", "--prompt", "a yellow", "y.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path, caption = result.stdout.rstrip("\n").split("\t")
    assert path == "y.png" and caption.startswith("a yellow")


@pytest.mark.parametrize("family", sorted(SEARCH_MODELS))
def test_find_ranks_the_right_image_first(family: str, tmp_path: Path) -> None:
    """CLIP prints cosines, SigLIP the probability that the image fits (4 decimals each). A
    third of the classes, half of them in the nested folder: each run is one interpreter
    start-up (about 7 s on a 2-core CPU); every class is ranked in-process by
    tests/test_search_models.py."""
    rng = random.Random(99)
    folder = tmp_path / "shapes"
    (folder / "nested").mkdir(parents=True)
    for i, (colour, shape) in enumerate(CLASSES):
        where = folder / "nested" if i % 2 else folder
        draw_shape(rng, colour, shape, rng.randint(64, 600)).save(where / f"{colour}-{shape}.png")
    (folder / "notes.txt").write_text("not an image, and not looked at inside a folder")
    asked = CLASSES[::3]
    with ThreadPoolExecutor(2) as pool:  # each run is mostly interpreter start-up
        model = str(SEARCH_MODELS[family])
        results = pool.map(
            lambda cls: run_cli(
                "find", caption_of(*cls), "shapes", cwd=tmp_path, SEARCH_MODEL=model
            ),
            asked,
        )
    for (colour, shape), result in zip(asked, results, strict=True):
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 12
        score, best = lines[0].split("\t")
        assert re.fullmatch(r"-?\d\.\d{4}", score)
        assert best.startswith("shapes/") and best.endswith(f"/{colour}-{shape}.png")
        scores = [float(line.split("\t")[0]) for line in lines]
        assert scores == sorted(scores, reverse=True)
        if family == "siglip":  # a probability: the shape asked for, and no other, is likely
            assert scores[0] > 0.5 and scores[1] < 0.05 and scores[-1] >= 0.0


def test_find_top_and_files_as_given(tmp_path: Path) -> None:
    rng = random.Random(5)
    for colour, shape in CLASSES[:4]:
        draw_shape(rng, colour, shape, 128).save(tmp_path / f"{colour}-{shape}.jpg")
    names = [f"./{c}-{s}.jpg" for c, s in CLASSES[:4]]
    result = run_cli("find", "a red square", *names, "--top", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith("\t./red-square.jpg")


def test_an_animation_is_captioned_past_its_blank_start_and_found_by_a_later_frame(
    tmp_path: Path,
) -> None:
    data, first, later = gif_with_a_blank_start()
    (tmp_path / "anim.gif").write_bytes(data)
    rng = random.Random(6)
    for colour, shape in CLASSES:
        if caption_of(colour, shape) != later:
            draw_shape(rng, colour, shape, 160).save(tmp_path / f"{colour}-{shape}.png")
    result = run_cli("caption", "anim.gif", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"anim.gif\t{first}\n"
    result = run_cli("find", later, ".", "--top", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n").endswith("\t./anim.gif")


def test_bad_files_are_reported_and_the_rest_still_processed(tmp_path: Path) -> None:
    corpus = [item for item in build_corpus(max_bytes=200_000) if item.expected != "ok"]
    good = tmp_path / "good.png"
    draw_shape(random.Random(2), "green", "triangle", 200).save(good)
    names = []
    for i, item in enumerate(corpus):
        name = f"bad{i:02d}{Path(item.filename).suffix}"
        (tmp_path / name).write_bytes(item.data)
        names.append(name)
    result = run_cli(
        "caption", *names, "good.png", "missing.png", cwd=tmp_path, MAX_IMAGE_BYTES="200000"
    )
    assert result.returncode == 1
    assert result.stdout == "good.png\ta green triangle\n"
    assert "Traceback" not in result.stderr
    errors = dict(line.split(": ", 1) for line in result.stderr.splitlines())
    assert set(errors) == {*names, "missing.png"}
    assert all(len(reason) > 5 for reason in errors.values())
    # Outside Discord the words are about files: nothing to upload or send again.
    assert not [r for r in errors.values() if "upload" in r or "send" in r], errors
    for name, item in zip(names, corpus, strict=True):
        if item.expected in ("bomb", "too_many_pixels", "too_large"):  # the size and the limit
            assert re.search(r"the (image|file) is \d.*; the limit is \d", errors[name]), item

    result = run_cli("find", "a green triangle", *names, "good.png", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0].endswith("\tgood.png")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["caption", "x.png"], {"CAPTION_MODEL": "./no/such/folder"}),
        (["find", "a", "x.png"], {"SEARCH_MODEL": "glimpse-test/not-a-model"}),
    ],
)
def test_missing_model_is_one_clear_line(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    draw_shape(random.Random(1), "red", "circle", 64).save(tmp_path / "x.png")
    result = run_cli(*args, cwd=tmp_path, **env)
    assert result.returncode == 1
    setting = next(iter(env))
    assert result.stderr.startswith(f"error: {setting}: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    result = run_cli("caption", "x.png", cwd=tmp_path, MAX_IMAGE_PIXELS="lots")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: MAX_IMAGE_PIXELS: must be a whole number (got 'lots')"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_is_one_clear_line(tmp_path: Path) -> None:
    draw_shape(random.Random(1), "red", "circle", 64).save(tmp_path / "x.png")
    result = run_cli("caption", "x.png", cwd=tmp_path, DEVICE="cuda")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: DEVICE: cuda was asked for, but no CUDA device is available"
    ]


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter, as the bot's process would set up its logging."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_library_warnings_appear_once_in_the_programs_format(tmp_path: Path) -> None:
    """huggingface_hub printed each warning twice (its own handler, then the root's)."""
    code = (
        "import logging\n"
        "from bot.cli.main import setup_logging\n"
        "setup_logging('WARNING')\n"
        "logging.getLogger('huggingface_hub.utils._http').warning('retrying')\n"
        "logging.getLogger('transformers.modeling_utils').error('broken')\n"
    )
    result = run_python(code, tmp_path)
    lines = result.stderr.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "WARNING huggingface_hub.utils._http: retrying",
        "ERROR   transformers.modeling_utils: broken",
    ], lines


def test_a_download_shows_its_progress_and_loading_weights_does_not(tmp_path: Path) -> None:
    """A first start downloads about 1.6 GB: a log silent for minutes looks hung."""
    code = (
        "from bot.cli.main import setup_logging\n"
        "setup_logging('INFO')\n"
        "from huggingface_hub.utils import tqdm as hub_bar\n"
        "from transformers.utils.logging import tqdm as weights_bar\n"
        "list(hub_bar(range(3), desc='model.safetensors'))\n"
        "list(weights_bar(range(3), desc='Loading weights'))\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model.safetensors" in result.stderr and "Loading weights" not in result.stderr


def test_usage_errors_exit_2_with_the_subcommands_usage(tmp_path: Path) -> None:
    for args, usage in [
        (["caption"], "usage: python -m bot caption "),
        (["caption", "--bogus", "x.png"], "usage: python -m bot caption "),
        (["find", "query-only"], "usage: python -m bot find "),
        (["find", "q", "x.png", "--top", "0"], "usage: python -m bot find "),
        (["find", "q", "x.png", "--tpo", "3"], "usage: python -m bot find "),
        (["check", "--verbose"], "usage: python -m bot check "),
        (["--bogus"], "usage: python -m bot [-h] COMMAND"),
    ]:
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert result.stderr.startswith(usage), (args, result.stderr)
    for args in (["--help"], ["caption", "--help"], ["find", "--help"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0 and "usage:" in result.stdout


def test_the_installed_script_names_itself(tmp_path: Path) -> None:
    """`pip install` puts the command line on the PATH as `glimpse` (pyproject.toml)."""
    script = Path(sys.executable).parent / "glimpse"
    result = subprocess.run(
        [str(script), "caption"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: glimpse caption ")


def test_caption_walks_folders_and_both_commands_report_a_folder_without_images(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    (tmp_path / "shapes" / "nested").mkdir(parents=True)
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    draw_shape(rng, "blue", "square", 120).save(tmp_path / "shapes" / "b.png")
    draw_shape(rng, "red", "circle", 120).save(tmp_path / "shapes" / "nested" / "a.png")
    draw_shape(rng, "green", "triangle", 120).save(tmp_path / "g.png")

    result = run_cli("caption", "shapes", "empty", "g.png", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "shapes/b.png\ta blue square",
        "shapes/nested/a.png\ta red circle",
        "g.png\ta green triangle",
    ]
    assert result.stderr.splitlines() == ["empty: no images found"]

    result = run_cli("find", "a red circle", "empty", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == ["empty: no images found"]
