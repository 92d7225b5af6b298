"""Turns the DEVICE and DTYPE settings into torch objects."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from bot.config import ConfigError
from bot.vision import cpu, packed
from bot.vision.checkpoints import ModelLoadError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(setting: str) -> torch.device:
    """`auto` is the first CUDA device when there is one, else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("DEVICE", f"{setting} was asked for, but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ConfigError("DEVICE", f"{setting} does not exist ({count} CUDA device(s) found)")
    return device


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """`auto`: float16 on CUDA; on the CPU, the dtype measured fastest that keeps the answers."""
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else cpu_auto_dtype()
    return _DTYPES[setting]


def packed_weights(setting: str, device: torch.device) -> bool:
    """Linear layers on fbgemm's packed float16 and int8 weights (bot/vision/packed.py): under
    `auto`, on a CPU that runs float32 (no bfloat16 faster than them), where they measured 1.2-3x
    faster with the same answers (AVX2 and AVX-512 CPUs: README, Performance). Elsewhere
    unmeasured, so off; `DTYPE=float32` means float32 throughout."""
    return (
        setting == "auto"
        and device.type == "cpu"
        and cpu_auto_dtype() == torch.float32
        and packed.supported()
    )


def precision_name(dtype: torch.dtype, packed_weights: bool) -> str:
    """The dtype and, where weights are packed, theirs and the images' cached keys and values'
    (bot/vision/packed.py): `float32+int8-weights+bf16-kv` on a CPU with VNNI and bfloat16
    dot products, `float32+fp16/int8-weights` on one with AVX2 alone."""
    if not packed_weights:
        return dtype_name(dtype)
    weights = "int8" if packed.step_kind() == "int8-rows" else "fp16/int8"
    cache = "+bf16-kv" if packed.cache_dtype() == torch.bfloat16 else ""
    return f"{dtype_name(dtype)}+{weights}-weights{cache}"


def cpu_auto_dtype() -> torch.dtype:
    """bfloat16 where the CPU multiplies it faster than float32 runs with packed int8 weights
    (AMX: bot/vision/cpu.py); elsewhere float32, with packed weights where supported."""
    return torch.bfloat16 if cpu.prefers_bf16() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cpu_threads() -> int:
    """The cores this process may really use: its CPU affinity, capped by a cgroup (Docker
    `--cpus`) quota, which torch does not read and would oversubscribe."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def configure_threads(device: torch.device) -> None:
    if device.type == "cpu" and torch.get_num_threads() != cpu_threads():
        torch.set_num_threads(cpu_threads())


def default_batch_max(device: torch.device) -> int:
    """Measured (README, Performance): GPUs gain up to 64; a CPU stops gaining around 8-16."""
    return 64 if device.type == "cuda" else 16


def default_batch_wait_ms(device: torch.device) -> float:
    """A CPU pays per item in a batch, so waiting for company only delays a lone request (5 ms
    of a `!find`, measured); requests that arrive while a batch runs join the next one anyway.
    A GPU runs a batch for about the price of one item, so there a short wait pays."""
    return 5.0 if device.type == "cuda" else 0.0


@contextlib.contextmanager
def loading_onto(device: torch.device, setting: str, model_id: str) -> Iterator[None]:
    """A GPU that fails as the weights move onto it (out of memory, shared with another
    program, a driver that broke after CUDA said yes) is one line for the admin, naming the
    setting, not a traceback."""
    try:
        yield
    except RuntimeError as exc:
        if device.type != "cuda" or not _gpus_fault(exc):
            raise  # a bug of ours, on the GPU too
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(
            f"{setting}: cannot load {model_id!r} on {device}: {reason}. "
            "Free the GPU's memory, or set DEVICE=cpu"
        ) from exc


def _gpus_fault(exc: RuntimeError) -> bool:
    accelerator = getattr(torch, "AcceleratorError", torch.OutOfMemoryError)  # (torch 2.8+)
    gpu = (torch.OutOfMemoryError, accelerator)
    return isinstance(exc, gpu) or str(exc).lstrip().startswith("CUDA")
