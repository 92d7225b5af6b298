"""What this CPU multiplies fast, read from /proc/cpuinfo: which kernels pay on it.

Only the first processor's block is read; a machine's cores are alike.
"""

from __future__ import annotations

import functools
from pathlib import Path


def bf16_pays(cpuinfo: str) -> bool:
    """Whether the CPU `cpuinfo` (the text of /proc/cpuinfo) has bfloat16 arithmetic that beats
    float32 with packed int8 weights (bot/vision/packed.py): Intel's AMX tiles. Intel's AVX-512
    bf16 alone (Cooper Lake, or a newer Xeon whose AMX a hypervisor hides) multiplies no faster
    than its float32 FMAs: BLIP's vision encoder took 833 ms in bfloat16 against 463 in float32.
    AMD's AVX-512 bf16 (Zen 4 and later) does run at twice float32's rate, but those CPUs have
    VNNI too, whose int8 dot products do twice as many products again and read half the bytes:
    on a 2-core AMD EPYC (family 26, Zen 5) BLIP's vision encoder took 180 ms per image with int8
    weights against 267 in bfloat16, and a decode step of one caption 10 ms against 16."""
    flags = _first_flags(cpuinfo)
    return "amx_bf16" in flags


def int8_dot_products(cpuinfo: str) -> bool:
    """Whether the CPU has VNNI, one instruction that multiplies int8 and adds into int32:
    fbgemm's int8 kernels then run at about three times float32's rate and need not keep a
    bit of headroom in their inputs (without it, they add pairs in 16 bits, which can
    saturate)."""
    flags = _first_flags(cpuinfo)
    return bool({"avx512_vnni", "avx_vnni"} & flags)


def bf16_dot_products(cpuinfo: str) -> bool:
    """Whether the CPU has bfloat16 dot-product instructions (AVX-512 bf16 or AMX), which
    multiply no faster than float32 without AMX on Intel but read half the bytes."""
    flags = _first_flags(cpuinfo)
    return bool({"avx512_bf16", "amx_bf16"} & flags)


@functools.cache
def prefers_bf16() -> bool:
    return bf16_pays(_cpuinfo())


@functools.cache
def has_vnni() -> bool:
    return int8_dot_products(_cpuinfo())


@functools.cache
def has_bf16() -> bool:
    return bf16_dot_products(_cpuinfo())


@functools.cache
def _cpuinfo() -> str:
    """Read once: each rule above asks for it."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _first_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor in `cpuinfo`."""
    first = cpuinfo.split("\n\n", 1)[0]
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in first.splitlines())
    )
    return frozenset(fields.get("flags", "").split())
