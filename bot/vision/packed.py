"""Linear layers on weights packed for fbgemm, torch's CPU kernels for reduced-precision
weights: float16 weights where a layer is bound by reading them, int8 where it computes.

On a CPU without native bfloat16 (AVX2 only) float32 is the only fast float, and linear layers
are most of the models' cost. Measured there (2-core AMD EPYC, README, Performance):
- A decode step or a text encoder multiplies a few rows by each weight: the time goes on
  reading the weights. Stored as float16 (half the bytes, the arithmetic still float32), a
  decode step's linear layers took 10 ms against 23 at one sequence and 27 against 64 at 16,
  with outputs equal to float32's to about 1e-6 (cosine of CLIP text embeddings 0.9999998).
- An image encoder multiplies hundreds of rows (its patches) by each weight: there the time
  goes on arithmetic, which float16 storage does not reduce and int8 halves: fbgemm multiplies
  int8 weights by inputs quantised on the fly. BLIP's vision encoder took 0.67 s against 1.04.
  Each image's inputs are quantised on their own, so its embedding does not depend on the
  others in its batch. The inputs get 7 bits (`reduce_range`), as fbgemm needs on CPUs
  without VNNI to keep its 16-bit sums from saturating.
- On a CPU with VNNI (AVX-512 VNNI or AVX-VNNI: bot/vision/cpu.py) int8 pays for decode steps
  too, with each row's inputs scaled to their own range (`int8-rows`): on a 2-core Intel Xeon a
  decode step took 17 ms against 24 with float16 weights at one sequence, 70 against 83 at 16
  (bench/steps.py). Without VNNI it measured no faster than float16 (33 ms against 32 on the
  EPYC). With VNNI the search model's image encoder runs on `int8-rows` too (pack_search_encoder).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from typing import Literal

import torch
from torch import nn

from bot.vision import cpu, kernels

Kind = Literal["float16", "int8", "int8-rows"]


@functools.cache
def supported() -> bool:
    """Whether this torch build has the kernels (an older or a future one may not)."""
    engines = torch.backends.quantized.supported_engines
    ops = (
        "linear_prepack",
        "linear_dynamic",
        "linear_prepack_fp16",
        "linear_dynamic_fp16",
        "linear_with_input_q_dq_qweight_dq_output_fp32",
    )
    return bool({"x86", "fbgemm"} & set(engines)) and all(
        hasattr(torch.ops.quantized, op) for op in ops
    )


def step_kind() -> Kind:
    """The weights for linear layers that meet a few rows each (decode steps): int8 where the
    CPU multiplies it natively, else float16."""
    return "int8-rows" if cpu.has_vnni() else "float16"


def cache_dtype() -> torch.dtype:
    """The dtype of the images' cross-attention keys and values next to packed weights. A
    decode step reads them whole (42 MB per caption in float32); in bfloat16, where the CPU has
    bfloat16 dot products, torch's attention reads half the bytes: 12 layers at 16 captions
    took 21 ms against 32 on the Intel Xeon. Without them it is slower (12 ms against 8 per
    layer on the AVX2 EPYC), so float32."""
    return torch.bfloat16 if cpu.has_bf16() else torch.float32


def packed_linear(weight: torch.Tensor, bias: torch.Tensor | None, kind: Kind) -> nn.Module:
    """An `nn.Linear`'s weight [out, in] and bias, packed for the kernel of `kind`: a module
    computing `x @ weight.T + bias` for a float32 `x` [..., in]. The modules can be compiled
    by TorchScript with whatever calls them (bot/vision/decoder.py)."""
    weight = weight.detach().float()
    # A copy: the kernel keeps the bias it is given, which would otherwise hold the
    # checkpoint's whole memory map open (see own_memory).
    bias = None if bias is None else bias.detach().to(torch.float32, copy=True)
    if kind == "float16":
        return Float16Linear(torch.ops.quantized.linear_prepack_fp16(weight, bias))
    scale = weight.abs().amax(dim=1).clamp_min(1e-12).double() / 127
    zero = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # The quantized tensor only carries the int8 rows into the packing call; torch
        # warns that such tensors, as a type for users to compute with, are deprecated.
        warnings.simplefilter("ignore", UserWarning)
        rows = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
    if kind == "int8":
        return Int8Linear(torch.ops.quantized.linear_prepack(rows, bias))
    # The sums of the int8 weights the kernel multiplies by (see kernels.int8_rows).
    sums = rows.dequantize().sum(dim=1).float()
    return Int8RowsLinear(
        torch.ops.quantized.linear_prepack(rows, None),
        sums,
        torch.zeros_like(sums) if bias is None else bias,
    )


class Float16Linear(nn.Module):
    def __init__(self, params: kernels.Params) -> None:
        super().__init__()
        self.params = params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.float16(x, self.params)


class Int8Linear(nn.Module):
    """Each item of `x`'s first dimension (an image of a batch) quantised on its own."""

    def __init__(self, params: kernels.Params) -> None:
        super().__init__()
        self.params = params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.int8_items(x, self.params)


class Int8RowsLinear(nn.Module):
    """Each row of `x` (a token) quantised on its own range."""

    def __init__(self, params: kernels.Params, sums: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.params = params
        self.sums = sums
        self.bias = bias
        self.levels = 255 if cpu.has_vnni() else 127  # 7 bits without VNNI, as `reduce_range`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.int8_rows(x, self.params, self.sums, self.bias, self.levels)


def pack_linears(model: nn.Module, kind: Kind, *, skip: nn.Module | None = None) -> None:
    """Replaces every `nn.Linear` inside `model` but those inside `skip`; the float32 weights
    they replace are freed."""
    for parent, name, linear in _linears(model, skip):
        parent.register_module(name, packed_linear(linear.weight, linear.bias, kind))


def _linears(
    model: nn.Module, skip: nn.Module | None = None
) -> list[tuple[nn.Module, str, nn.Linear]]:
    """Every plain `nn.Linear` inside `model` but those inside `skip`, with its parent and its
    name there, listed before any is replaced."""
    skipped = set() if skip is None else {id(module) for module in skip.modules()}
    return [
        (parent, name, child)
        for parent in model.modules()
        if id(parent) not in skipped
        for name, child in parent.named_children()
        if type(child) is nn.Linear
    ]


def pack_image_encoder(encoder: nn.Module, *, int8_attention: bool) -> None:
    """int8 for the feed-forward layers of a vision transformer (BLIP's, CLIP's and SigLIP's
    `…MLP` blocks: two thirds of its multiplications) and, with `int8_attention`, for its
    attention projections too, which otherwise stay float32: with hundreds of rows per weight,
    float16 storage saves no time (CLIP ViT-B/32, batch of 16: 60 ms per image against 58)."""
    for block in list(encoder.modules()):
        if int8_attention or type(block).__name__.endswith("MLP"):
            pack_linears(block, "int8")


def pack_search_encoder(encoder: nn.Module, *, per_token: bool) -> None:
    """CLIP's or SigLIP's image encoder. With `per_token` (CPUs with VNNI) every linear layer
    runs on int8 weights with each token's inputs scaled to their own range (`int8-rows`), one
    call for the whole batch instead of one per image of 50 tokens. 8 bits per token are finer
    than 7 per image, so the attention projections can be int8 too. On the Intel Xeon, batches
    of 16, median of interleaved rounds: CLIP ViT-B/32 33 -> 25-28 ms per image, SigLIP
    ViT-B/16 126 -> 116; the full-size CLIP's embeddings came closer to float32's (least cosine
    over 16 images 0.99986 -> 0.99996). Without VNNI the rows' scaling cost what int8 saved
    (decode steps on the AVX2 EPYC), and with the 7 bits fbgemm takes there a near-tie of the
    tiny CLIP changed places; so int8 per image for the feed-forward layers only (in its
    attention projections too, it reordered the tiny CLIP's near-ties as well)."""
    if per_token:
        pack_linears(encoder, "int8-rows")
    else:
        pack_image_encoder(encoder, int8_attention=False)


def drop_linears(model: nn.Module) -> None:
    """Removes every `nn.Linear` inside `model`, whose linear layers run elsewhere on packed
    copies (bot/vision/decoder.py): their float32 weights are freed, and `model` can no longer
    run itself."""
    for parent, name, _ in _linears(model):
        delattr(parent, name)


def own_memory(model: nn.Module) -> None:
    """Copies the tensors `model` keeps out of its checkpoint's memory map, so that the map is
    closed. Packing read every float32 weight it replaced through that map; left open, those
    pages stayed in the process's resident memory though nothing would read them again."""
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            tensor.data = tensor.data.clone()
