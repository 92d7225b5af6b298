"""`python -m bot download-models`: fills the model cache (HF_HOME) ahead of time, for example
on a machine with internet access whose cache is then copied to an air-gapped host."""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from bot.cli.check import EXIT_FAILED, EXIT_OK, Report
from bot.config import Settings

# What a transformers checkpoint needs; other weight formats (TensorFlow, Flax, ONNX, the
# PyTorch pickle next to safetensors) would multiply the download for nothing.
CONFIG_PATTERNS = ("*.json", "*.txt", "*.model")
SAFETENSORS_PATTERNS = ("*.safetensors",)
PICKLE_PATTERNS = ("pytorch_model*.bin",)


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
    from huggingface_hub import constants, list_repo_files, snapshot_download

    from bot.vision.checkpoints import ModelLoadError, hub_unreachable

    # One quick request first: the listing below retries with back-off for minutes when the
    # hub is out of reach. (With HF_HUB_OFFLINE set, the listing itself says so at once.)
    unreachable = None if constants.HF_HUB_OFFLINE else hub_unreachable(model_id, setting)
    if unreachable:
        raise ModelLoadError(
            f"{setting}: cannot download {model_id!r}: {unreachable}. Fix: run this where there "
            f"is internet and copy its cache (HF_HOME) here, or set {setting} to a local folder"
        )
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
