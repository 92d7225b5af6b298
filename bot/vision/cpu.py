"""What this CPU multiplies fast, read from /proc/cpuinfo: which kernels pay on it.

Only the first processor's block is read; a machine's cores are alike.
"""

from __future__ import annotations

import functools
from pathlib import Path


def bf16_pays(cpuinfo: str) -> bool:
    """Whether the CPU `cpuinfo` (the text of /proc/cpuinfo) has bfloat16 arithmetic that beats
    float32: Intel's AMX tiles, or AVX-512 bf16 on AMD (Zen 4 and later), whose bfloat16 dot
    products run at twice its float32 rate. Intel's AVX-512 bf16 alone (Cooper Lake, or a newer
    Xeon whose AMX a hypervisor hides) multiplies no faster than its float32 FMAs, and measured
    1.8x slower (BLIP's vision encoder 833 ms against 463)."""
    vendor, flags = _first_processor(cpuinfo)
    if "amx_bf16" in flags:
        return True
    return "avx512_bf16" in flags and vendor == "AuthenticAMD"


def int8_dot_products(cpuinfo: str) -> bool:
    """Whether the CPU has VNNI, one instruction that multiplies int8 and adds into int32:
    fbgemm's int8 kernels then run at about three times float32's rate and need not keep a
    bit of headroom in their inputs (without it, they add pairs in 16 bits, which can
    saturate)."""
    _, flags = _first_processor(cpuinfo)
    return bool({"avx512_vnni", "avx_vnni"} & flags)


def bf16_dot_products(cpuinfo: str) -> bool:
    """Whether the CPU has bfloat16 dot-product instructions (AVX-512 bf16 or AMX), which
    multiply no faster than float32 without AMX on Intel but read half the bytes."""
    _, flags = _first_processor(cpuinfo)
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


def _first_processor(cpuinfo: str) -> tuple[str, frozenset[str]]:
    """The vendor and the flags of the first processor in `cpuinfo`."""
    first = cpuinfo.split("\n\n", 1)[0]
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in first.splitlines())
    )
    return fields.get("vendor_id", ""), frozenset(fields.get("flags", "").split())
