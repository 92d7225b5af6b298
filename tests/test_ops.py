"""`python -m bot check` and `python -m bot download-models`, run as an admin runs them."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli.check import check, reference_image
from bot.cli.download import download_models, human_size, weight_patterns
from bot.cli.main import main as cli_main
from bot.index.schema import SCHEMA_VERSION
from tests.conftest import TINY_BLIP, TINY_CLIP, tiny_settings

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTIzNDU2.check-must-never-print.this-token"


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "CAPTION_MODEL": str(TINY_BLIP),
        "SEARCH_MODEL": str(TINY_CLIP),
        "DEVICE": "cpu",
        "DATA_DIR": str(tmp_path / "data"),
        "DISCORD_TOKEN": TOKEN,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,  # no stray .env
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_passes_with_working_models_and_never_prints_the_token(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = result.stdout.splitlines()
    assert lines[0] == "OK    settings: valid"
    assert "OK    DISCORD_TOKEN: set (not shown)" in lines
    assert "OK    device: cpu, dtype " in output
    assert any(line.startswith("OK    caption model: ") and " loaded in " in line for line in lines)
    assert any(line.startswith("OK    search model: ") and " loaded in " in line for line in lines)
    assert any(line.startswith("OK    caption: 'a red circle'") for line in lines)
    assert any(line.startswith("OK    embedding: dimension 32") for line in lines)
    assert lines[-1] == "check passed"
    assert "FAIL" not in output
    assert TOKEN not in output and "check-must-never-print" not in output


def test_check_names_the_setting_of_a_missing_model(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", CAPTION_MODEL=str(tmp_path / "no-such-model"))
    assert result.returncode == 1
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1, result.stdout
    assert failures[0].startswith("FAIL  CAPTION_MODEL: ") and "no-such-model" in failures[0]
    assert result.stdout.splitlines()[-1] == "check failed: 1 problem(s)"
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_check_without_a_token_or_a_writable_data_dir(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    settings = tiny_settings(DATA_DIR=str(tmp_path / "a-file" / "data"))
    lines: list[str] = []
    assert check(settings, out=lines.append) == 1
    failures = [line for line in lines if line.startswith("FAIL")]
    assert failures[0].startswith("FAIL  DISCORD_TOKEN: is required")
    assert failures[1] == (
        f"FAIL  DATA_DIR: cannot write to '{tmp_path}/a-file/data': "
        f"'{tmp_path}/a-file' is a file, not a folder"
    )
    assert len(failures) == 2 and lines[-1] == "check failed: 2 problem(s)"
    assert any(line.startswith("OK    caption: 'a red circle'") for line in lines)


def test_check_creates_no_folder(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    lines: list[str] = []
    assert check(tiny_settings(DATA_DIR=str(data)), out=lines.append) == 1  # no token
    assert f"OK    DATA_DIR: {data} does not exist yet; the bot will create it" in lines
    assert not (tmp_path / "new").exists()


def test_check_fails_a_checkpoint_of_the_wrong_kind_in_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", CAPTION_MODEL=str(TINY_CLIP), SEARCH_MODEL=str(TINY_BLIP))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failures == [
        f"FAIL  CAPTION_MODEL: '{TINY_CLIP}' is a CLIP checkpoint, not a BLIP one. "
        "Fix: set CAPTION_MODEL to a BLIP checkpoint",
        f"FAIL  SEARCH_MODEL: '{TINY_BLIP}' is a BLIP checkpoint, not a CLIP or SigLIP one. "
        "Fix: set SEARCH_MODEL to a CLIP or SigLIP checkpoint",
    ]


def test_download_models_verifies_local_folders() -> None:
    lines: list[str] = []
    assert download_models(tiny_settings(), out=lines.append) == 0
    assert lines[0].startswith("model cache: ") and "HF_HOME" in lines[0]
    assert (
        lines[1].startswith(f"OK    CAPTION_MODEL: {TINY_BLIP}: ")
        and "KB, local folder" in lines[1]
    )
    assert lines[2].startswith(f"OK    SEARCH_MODEL: {TINY_CLIP}: ")
    assert lines[3].startswith("both models ready: ") and lines[3].endswith(" MB")


def test_download_models_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPTION_MODEL", str(TINY_BLIP))
    monkeypatch.setenv("SEARCH_MODEL", str(tmp_path / "gone"))
    assert cli_main(["download-models"]) == 1
    out = capsys.readouterr().out
    assert f"OK    CAPTION_MODEL: {TINY_BLIP}: " in out
    assert "FAIL  SEARCH_MODEL: the folder " in out and "gone" in out


def test_download_models_reports_a_missing_folder(tmp_path: Path) -> None:
    settings = tiny_settings(SEARCH_MODEL=str(tmp_path / "gone"))
    lines: list[str] = []
    assert download_models(settings, out=lines.append) == 1
    failures = [line for line in lines if line.startswith("FAIL")]
    assert len(failures) == 1 and failures[0].startswith("FAIL  SEARCH_MODEL: ")
    assert lines[-1] == "download-models failed: 1 problem(s)"


def test_download_models_fetches_hub_ids_into_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub is out of reach in tests: a stand-in serves the tiny models as snapshots."""
    import huggingface_hub

    snapshots = {"org/blip": TINY_BLIP, "org/clip": TINY_CLIP}
    fetched: list[tuple[str, list[str]]] = []

    def list_repo_files(repo_id: str) -> list[str]:
        if repo_id not in snapshots:
            raise OSError(f"404: {repo_id} not found")
        return [p.name for p in snapshots[repo_id].iterdir()] + ["tf_model.h5"]

    def snapshot_download(repo_id: str, allow_patterns: list[str]) -> str:
        fetched.append((repo_id, allow_patterns))
        return str(snapshots[repo_id])

    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    lines: list[str] = []
    settings = tiny_settings(CAPTION_MODEL="org/blip", SEARCH_MODEL="org/clip")
    assert download_models(settings, out=lines.append) == 0
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    assert fetched == [("org/blip", patterns), ("org/clip", patterns)]
    assert lines[1].startswith("OK    CAPTION_MODEL: org/blip: ")
    assert "downloaded and loads" in lines[1]

    lines.clear()
    settings = tiny_settings(CAPTION_MODEL="org/blip", SEARCH_MODEL="org/missing")
    assert download_models(settings, out=lines.append) == 1
    assert [line for line in lines if line.startswith("FAIL")] == [
        "FAIL  SEARCH_MODEL: cannot download 'org/missing': 404: org/missing not found"
    ]


def test_download_patterns_skip_other_weight_formats() -> None:
    blip = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "vocab.txt"]
    assert weight_patterns(blip) == ["*.json", "*.txt", "*.model", "*.safetensors"]
    old = ["config.json", "pytorch_model.bin", "flax_model.msgpack"]
    assert weight_patterns(old) == ["*.json", "*.txt", "*.model", "pytorch_model*.bin"]


def test_sizes_read_well() -> None:
    assert [human_size(n) for n in (999, 741_000, 990_000_000, 1_500_000_000)] == [
        "999 B",
        "741.0 KB",
        "990.0 MB",
        "1.5 GB",
    ]


def test_the_test_image_is_drawn_in_code() -> None:
    image = reference_image()
    assert image.size == (128, 128) and image.mode == "RGB"
    assert image.getpixel((64, 64)) == (220, 30, 30) and image.getpixel((2, 2)) == (235, 235, 235)


def test_check_fails_an_sqlite_too_old_for_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    data = tmp_path / "data"
    lines: list[str] = []
    assert check(tiny_settings(DATA_DIR=str(data), DISCORD_TOKEN="x"), out=lines.append) == 1
    assert (
        f"FAIL  DATA_DIR: cannot use '{data}': this Python's SQLite is 3.34.1, and the image "
        "index needs 3.35 or newer (the Docker image has it)"
    ) in lines


def test_check_fails_an_index_the_start_would_refuse(tmp_path: Path) -> None:
    """A rollback after an upgrade, or a file that is no database: `check` says what the
    start would, instead of passing; an index of this version passes, unchanged."""
    data = tmp_path / "data"
    data.mkdir()
    index = data / "index.sqlite3"
    settings = tiny_settings(DATA_DIR=str(data), DISCORD_TOKEN="x")
    with contextlib.closing(sqlite3.connect(index)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    lines: list[str] = []
    assert check(settings, out=lines.append) == 1
    assert (
        f"FAIL  DATA_DIR: cannot use '{data}': {index} has schema version {SCHEMA_VERSION + 1}, "
        f"newer than this code's {SCHEMA_VERSION}: upgrade the bot"
    ) in lines
    index.write_bytes(b"not a database, though long enough to have a header" * 4)
    lines.clear()
    assert check(settings, out=lines.append) == 1
    assert f"FAIL  DATA_DIR: cannot use '{data}': '{index}': file is not a database" in lines
    index.unlink()
    with contextlib.closing(sqlite3.connect(index)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    lines.clear()
    assert check(settings, out=lines.append) == 0, lines
    assert f"OK    DATA_DIR: {data} is writable, its index readable" in lines
