"""Checkpoints named by hub id when the Hugging Face hub is out of reach: one line per setting,
fast, naming the model, the reason and the fix; a model in the cache still loads.

Real processes (huggingface_hub reads its settings once, at import). The "hub" is an address on
127.0.0.1: a closed port, or a server that never answers; nothing goes further.
"""

from __future__ import annotations

import http.server
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY_BLIP, TINY_CLIP
from tests.shapes import draw_shape

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BLIP = "Salesforce/blip-image-captioning-base"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


def run_cli(
    tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The command line with the default models, an empty model cache and a hub that is not
    there, unless `env` says otherwise; returns the result and how long it took."""
    environ = {k: v for k, v in os.environ.items() if k not in ("CAPTION_MODEL", "SEARCH_MODEL")}
    environ.update(
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="",
        HF_HOME=str(tmp_path / "hf"),
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        HF_HUB_DISABLE_TELEMETRY="1",
        DEVICE="cpu",
    )
    environ.update(env)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - started


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A hub that accepts connections and never answers (a firewall that swallows packets
    looks the same to the client: a timeout)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def refusing_hub() -> Iterator[str]:
    """A hub that refuses every model as the real one refuses a gated model ("GatedRepo")
    or one that is private or not there ("RepoNotFound"): `/gated/...` or anything else."""

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            gated = self.path.startswith("/gated/")
            self.send_response(403 if gated else 404)
            self.send_header("X-Error-Code", "GatedRepo" if gated else "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def cache(hf_home: Path, repo_id: str, folder: Path) -> None:
    """What `download-models` leaves in HF_HOME for `repo_id`: a snapshot of the checkpoint."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


@pytest.fixture
def image(tmp_path: Path) -> str:
    draw_shape(random.Random(3), "red", "circle", 96).save(tmp_path / "x.png")
    return "x.png"


def fix_is_named(line: str, setting: str) -> bool:
    return (
        "`python -m bot download-models`" in line
        and "HF_HUB_OFFLINE=1" in line
        and f"set {setting} to a local folder" in line
    )


def hub_named(line: str) -> str:
    """The hub address the line names (the closed port is chosen per run)."""
    start = line.index("hub at ") + len("hub at ")
    return line[start : line.index(" ", start)]


def test_caption_without_the_hub_is_one_line_within_seconds(tmp_path: Path, image: str) -> None:
    result, took = run_cli(tmp_path, "caption", image)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    hub = hub_named(line)
    assert line.startswith(
        f"error: CAPTION_MODEL: cannot load '{DEFAULT_BLIP}': no network: cannot reach the "
        f"Hugging Face hub at {hub} ("
    )
    assert f"it is not in the model cache ({tmp_path / 'hf' / 'hub'})" in line
    assert fix_is_named(line, "CAPTION_MODEL")
    assert took < 30


def test_check_without_the_hub_fails_each_model_in_one_line(tmp_path: Path) -> None:
    result, took = run_cli(tmp_path, "check")
    assert result.returncode == 1 and result.stderr == ""
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split(":")[0] for line in failures] == [
        "FAIL  DISCORD_TOKEN",
        "FAIL  CAPTION_MODEL",
        "FAIL  SEARCH_MODEL",
    ]
    assert f"'{DEFAULT_BLIP}': no network: " in failures[1] and fix_is_named(
        failures[1], "CAPTION_MODEL"
    )
    assert f"'{DEFAULT_CLIP}': no network: " in failures[2] and fix_is_named(
        failures[2], "SEARCH_MODEL"
    )
    assert result.stdout.splitlines()[-1] == "check failed: 3 problem(s)"
    assert not (tmp_path / "data").exists()  # check creates nothing
    assert took < 30


def test_a_hub_that_never_answers_is_given_up_on(
    tmp_path: Path, image: str, silent_hub: str
) -> None:
    result, took = run_cli(
        tmp_path, "caption", image, HF_ENDPOINT=silent_hub, HF_HUB_ETAG_TIMEOUT="2"
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert f"cannot reach the Hugging Face hub at {silent_hub} (no answer within 2 s)" in line
    assert took < 30


def test_offline_without_the_model_in_the_cache(tmp_path: Path, image: str) -> None:
    result, _ = run_cli(tmp_path, "find", "a red circle", image, HF_HUB_OFFLINE="1")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: SEARCH_MODEL: cannot load '{DEFAULT_CLIP}': it is not in the model cache "
        f"({tmp_path / 'hf' / 'hub'}) and HF_HUB_OFFLINE=1 forbids downloading it. Fix: where "
        "there is internet, run `python -m bot download-models` and copy its cache (HF_HOME) "
        "here; or unset HF_HUB_OFFLINE where the hub is reachable; or set SEARCH_MODEL to a "
        "local folder"
    ]


def test_hub_settings_in_the_env_file_count_without_docker(tmp_path: Path, image: str) -> None:
    """As the README tells: HF_HUB_OFFLINE=1 in .env (not exported) forbids downloading."""
    (tmp_path / ".env").write_text(f"HF_HUB_OFFLINE=1\nHF_HOME={tmp_path / 'hf'}\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ.update(PYTHONPATH=str(ROOT), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    environ.pop("SEARCH_MODEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "bot", "find", "a red circle", image],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"({tmp_path / 'hf' / 'hub'}) and HF_HUB_OFFLINE=1 forbids" in result.stderr


def test_a_cached_model_loads_offline_or_with_the_hub_out_of_reach(
    tmp_path: Path, image: str
) -> None:
    cache(tmp_path / "hf", "glimpse-test/blip-tiny", TINY_BLIP)
    models = {"CAPTION_MODEL": "glimpse-test/blip-tiny"}
    offline, _ = run_cli(tmp_path, "caption", image, HF_HUB_OFFLINE="1", **models)
    assert (offline.returncode, offline.stdout, offline.stderr) == (0, "x.png\ta red circle\n", "")

    unreachable, took = run_cli(tmp_path, "caption", image, **models)
    assert unreachable.returncode == 0 and unreachable.stdout == "x.png\ta red circle\n"
    [warning] = unreachable.stderr.splitlines()
    assert " WARNING bot.vision.checkpoints: CAPTION_MODEL: no network: " in warning
    assert warning.endswith(
        "; using the cached copy of 'glimpse-test/blip-tiny' (set HF_HUB_OFFLINE=1 to skip this "
        "check)"
    )
    assert took < 30


def test_a_cached_checkpoint_of_the_wrong_kind(tmp_path: Path, image: str) -> None:
    cache(tmp_path / "hf", "glimpse-test/clip-tiny", TINY_CLIP)
    result, _ = run_cli(
        tmp_path, "caption", image, HF_HUB_OFFLINE="1", CAPTION_MODEL="glimpse-test/clip-tiny"
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: CAPTION_MODEL: 'glimpse-test/clip-tiny' is a CLIP checkpoint, not a BLIP one. "
        "Fix: set CAPTION_MODEL to a BLIP checkpoint"
    ]


def test_download_models_without_the_hub(tmp_path: Path) -> None:
    result, took = run_cli(tmp_path, "download-models")
    assert result.returncode == 1 and result.stderr == ""
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 2
    for failure, setting, model in zip(
        failures, ("CAPTION_MODEL", "SEARCH_MODEL"), (DEFAULT_BLIP, DEFAULT_CLIP), strict=True
    ):
        assert failure.startswith(f"FAIL  {setting}: cannot download '{model}': no network: ")
        assert failure.endswith(
            "Fix: run this where there is internet and copy its cache (HF_HOME) here, or set "
            f"{setting} to a local folder"
        )
    assert took < 30


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("gated/model", "is gated on the Hugging Face hub: accept its terms on huggingface.co, "),
        ("someone/private-model", "the Hugging Face hub has no model 'someone/private-model' "),
    ],
)
def test_a_gated_or_private_model_names_the_token_setting(
    tmp_path: Path, image: str, refusing_hub: str, model: str, says: str
) -> None:
    """The fix works where the bot runs: under Docker there is no `hf` to log in with."""
    result, _ = run_cli(tmp_path, "caption", image, HF_ENDPOINT=refusing_hub, CAPTION_MODEL=model)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: CAPTION_MODEL: ") and says in line
    assert "in .env as HF_TOKEN=..." in line
