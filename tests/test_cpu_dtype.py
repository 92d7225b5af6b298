"""`DTYPE=auto` on a CPU: bfloat16 only where it multiplies faster than float32 with packed
int8 weights (AMX); int8 decode steps only where the CPU multiplies int8 natively (VNNI).

The blocks are /proc/cpuinfo's first processor, trimmed to the lines that matter; the flags
are those the kernel printed on each kind of machine (the Intel one is a cloud VM whose AMX
its hypervisor hides, where bfloat16 measured 1.8x slower than float32; the Zen 5 one a cloud
VM where int8 weights measured faster than bfloat16: bot/vision/cpu.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.vision.cpu import bf16_dot_products, bf16_pays, int8_dot_products

COMMON = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl cpuid pni pclmulqdq "
    "ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor "
    "lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms rdseed adx smap clflushopt clwb sha_ni "
    "xsaveopt xsavec xgetbv1 xsaves"
)
AVX512 = "avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512vbmi avx512_vbmi2 gfni"
VNNI = "vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq"


def block(vendor: str, family: int, model: int, name: str, flags: str) -> str:
    return (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\nflags\t\t: {flags}\n\nprocessor\t: 1\nvendor_id\t: {vendor}\n"
    )


INTEL_HIDDEN_AMX = block(
    "GenuineIntel",
    6,
    207,
    "Intel(R) Xeon(R) Processor",
    f"{COMMON} {AVX512} avx_vnni avx512_bf16 {VNNI} avx512_fp16 arch_capabilities",
)
INTEL_AMX = block(
    "GenuineIntel",
    6,
    143,
    "Intel(R) Xeon(R) Platinum 8480+",
    f"{COMMON} {AVX512} avx_vnni avx512_bf16 {VNNI} avx512_fp16 amx_bf16 amx_tile amx_int8",
)
AMD_ZEN4 = block(
    "AuthenticAMD",
    25,
    17,
    "AMD EPYC 9R14 96-Core Processor",
    f"{COMMON} {AVX512} avx512_bf16 clzero xsaveerptr {VNNI}",
)
AMD_ZEN5 = block(
    "AuthenticAMD",
    26,
    2,
    "AMD EPYC",
    f"{COMMON} {AVX512} avx_vnni avx512_bf16 clzero xsaveerptr {VNNI} avx512_vp2intersect",
)
AMD_ZEN3 = block(
    "AuthenticAMD", 25, 1, "AMD EPYC 7R13 Processor", f"{COMMON} clzero xsaveerptr vaes"
)


def test_bfloat16_where_it_beats_float32() -> None:
    assert bf16_pays(INTEL_AMX)


def test_float32_where_bfloat16_is_no_faster_or_emulated() -> None:
    assert not bf16_pays(INTEL_HIDDEN_AMX)
    assert not bf16_pays(AMD_ZEN3)
    assert not bf16_pays("")


def test_packed_int8_where_vnni_beats_amds_bfloat16() -> None:
    for amd in (AMD_ZEN4, AMD_ZEN5):
        assert not bf16_pays(amd)
        assert int8_dot_products(amd)


def test_only_the_first_processor_is_read() -> None:
    second_has_amx = INTEL_HIDDEN_AMX + "flags\t\t: amx_bf16\n"
    assert not bf16_pays(second_has_amx)


@pytest.mark.parametrize("has", [int8_dot_products, bf16_dot_products])
def test_int8_steps_and_bfloat16_keys_where_the_cpu_has_the_instructions(
    has: Callable[[str], bool],
) -> None:
    """VNNI for int8 decode steps, bfloat16 dot products for the images' keys and values:
    every AVX-512 block here has both, Zen 3 (AVX2) neither."""
    assert has(INTEL_HIDDEN_AMX)
    assert has(INTEL_AMX)
    assert has(AMD_ZEN4)
    assert has(AMD_ZEN5)
    assert not has(AMD_ZEN3)
    assert not has("")
