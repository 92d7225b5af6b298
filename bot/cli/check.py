"""Operations commands: `python -m bot check` and `python -m bot download-models`.

Neither connects to Discord. `check` answers "will the bot start, and do its models work?";
`download-models` fills the model cache (HF_HOME) ahead of time, for example on a machine with
internet access whose cache is then copied to an air-gapped host.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from bot.config import ConfigError, Settings

EXIT_OK, EXIT_FAILED = 0, 1

# What a transformers checkpoint needs; other weight formats (TensorFlow, Flax, ONNX, the
# PyTorch pickle next to safetensors) would multiply the download for nothing.
CONFIG_PATTERNS = ("*.json", "*.txt", "*.model")
SAFETENSORS_PATTERNS = ("*.safetensors",)
PICKLE_PATTERNS = ("pytorch_model*.bin",)


def reference_image(size: int = 128) -> Image.Image:
    """A red disc on light grey: what the tiny test models were trained on, and plain enough
    for any captioning model to name."""
    image = Image.new("RGB", (size, size), (235, 235, 235))
    margin = size // 4
    ImageDraw.Draw(image).ellipse(
        (margin, margin, size - margin, size - margin), fill=(220, 30, 30)
    )
    return image


class Report:
    """OK/FAIL lines as they happen, printed to stdout; `failures` counts the FAILs."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.failures = 0

    def ok(self, what: str, detail: str) -> None:
        self.out(f"OK    {what}: {detail}")

    def fail(self, message: str) -> None:
        self.failures += 1
        self.out(f"FAIL  {message}")

    def note(self, text: str) -> None:
        self.out(f"      {text}")


# --- check ------------------------------------------------------------------------------------


def check(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Validates what the settings point at, loads both models, captions and embeds a test
    image. Prints one line per step; exit status 0 when every step passed."""
    report = Report(out)
    report.ok("settings", "valid")
    if settings.discord_token is None:
        report.fail("DISCORD_TOKEN: is required to run the bot (see .env.example)")
    else:
        report.ok("DISCORD_TOKEN", "set (not shown)")
    _check_data_dir(settings.data_dir, report)
    asyncio.run(_check_models(settings, report))
    out("check passed" if not report.failures else f"check failed: {report.failures} problem(s)")
    return EXIT_FAILED if report.failures else EXIT_OK


def _check_data_dir(data_dir: Path, report: Report) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        report.fail(f"DATA_DIR: cannot write to {str(data_dir)!r}: {reason}")
        return
    report.ok("DATA_DIR", f"{data_dir.resolve()} is writable")


async def _check_models(settings: Settings, report: Report) -> None:
    from bot.vision.checkpoints import ModelLoadError
    from bot.vision.service import VisionService
    from bot.workers import Workers

    workers = Workers()
    try:
        vision = VisionService(settings, workers)
    except ConfigError as exc:  # DEVICE=cuda on a host without CUDA
        report.fail(str(exc))
        workers.shutdown()
        return
    info = vision.info
    report.ok("device", f"{info.device}, dtype {info.dtype}")
    image = reference_image()
    try:
        try:
            took = await _timed(vision.captioner())
            report.ok("caption model", f"{info.caption_model} loaded in {took:.1f} s")
            started = time.perf_counter()
            caption = await vision.caption(image)
            took = time.perf_counter() - started
            report.ok("caption", f"{caption!r} for the test image (a red disc) in {took:.2f} s")
        except ModelLoadError as exc:
            report.fail(str(exc))
        try:
            took = await _timed(vision.embedder())
            report.ok("search model", f"{info.search_model} loaded in {took:.1f} s")
            started = time.perf_counter()
            image_vector = (await vision.embed_images([image]))[0]
            text_vectors = await vision.embed_text(["a red circle", "a green square"])
            took = time.perf_counter() - started
            scores = text_vectors @ image_vector
            report.ok(
                "embedding",
                f"dimension {image_vector.shape[0]}, in {took:.2f} s; the test image scores "
                f"{scores[0]:.2f} against 'a red circle', {scores[1]:.2f} against 'a green square'",
            )
        except ModelLoadError as exc:
            report.fail(str(exc))
    finally:
        await vision.close()
        workers.shutdown()


async def _timed(loading: Any) -> float:
    started = time.perf_counter()
    await loading
    return time.perf_counter() - started


# --- download-models --------------------------------------------------------------------------


def download_models(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Fetches both checkpoints into the hub cache (local folders are only checked), then loads
    each from where it lies to prove it is complete."""
    import torch
    from huggingface_hub import constants

    from bot.vision.blip import Captioner
    from bot.vision.checkpoints import ModelLoadError, looks_like_path
    from bot.vision.clip import Embedder

    report = Report(out)
    out(f"model cache: {constants.HF_HUB_CACHE} (set HF_HOME to move it)")
    cpu, fp32 = torch.device("cpu"), torch.float32
    loaders: list[tuple[str, str, Callable[[str], object]]] = [
        (
            "CAPTION_MODEL",
            settings.caption_model,
            lambda source: Captioner.load(source, cpu, fp32, settings.caption_max_tokens),
        ),
        ("SEARCH_MODEL", settings.search_model, lambda source: Embedder.load(source, cpu, fp32)),
    ]
    total = 0
    for setting, model_id, load in loaders:
        local = Path(model_id).expanduser()
        is_local = looks_like_path(model_id) or local.is_dir()
        started = time.perf_counter()
        try:
            if is_local:
                if not local.is_dir():
                    raise ModelLoadError(f"{setting}: the folder {model_id!r} does not exist")
                folder = local
            else:
                folder = Path(_snapshot(model_id, setting))
            load(str(folder))
        except ModelLoadError as exc:
            report.fail(str(exc))
            continue
        size = folder_size(folder)
        total += size
        took = time.perf_counter() - started
        where = "local folder, loads" if is_local else f"downloaded and loads ({folder})"
        report.ok(setting, f"{model_id}: {human_size(size)}, {where}, {took:.1f} s")
    if report.failures:
        out(f"download-models failed: {report.failures} problem(s)")
        return EXIT_FAILED
    out(f"both models ready: {human_size(total)}")
    return EXIT_OK


def _snapshot(model_id: str, setting: str) -> str:
    from huggingface_hub import list_repo_files, snapshot_download

    from bot.vision.checkpoints import ModelLoadError

    try:
        patterns = weight_patterns(list_repo_files(model_id))
        return str(snapshot_download(model_id, allow_patterns=patterns))
    # The hub's HTTP stack (requests or httpx, by version) raises its own types besides
    # OSError; whichever it is, the admin gets one line naming the setting.
    except Exception as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise ModelLoadError(f"{setting}: cannot download {model_id!r}: {first}") from None


def weight_patterns(files: Iterable[str]) -> list[str]:
    """Configs and tokenizers, plus safetensors weights, or the PyTorch pickle when a repository
    has no safetensors."""
    names = list(files)
    has_safetensors = any(
        fnmatch.fnmatch(name, pattern) for name in names for pattern in SAFETENSORS_PATTERNS
    )
    weights = SAFETENSORS_PATTERNS if has_safetensors else PICKLE_PATTERNS
    return [*CONFIG_PATTERNS, *weights]


def folder_size(folder: Path) -> int:
    """Bytes in the folder's files; the hub cache's symlinks are followed to their blobs."""
    return sum(os.path.getsize(p) for p in folder.rglob("*") if p.is_file())


def human_size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    scaled = size / 1000
    for unit in ("KB", "MB"):
        if scaled < 1000:
            return f"{scaled:.1f} {unit}"
        scaled /= 1000
    return f"{scaled:.1f} GB"
