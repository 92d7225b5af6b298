"""The calls into fbgemm's packed-weight kernels (bot/vision/packed.py), compiled by TorchScript.

From Python, every call of a `torch.ops.quantized` operator matches its arguments against the
operator's schema and converts the packed weights (a TorchScript object) on the way: about
20 µs a call, as long as the int8 kernel itself takes at one row of 768 (Intel Xeon, median of
interleaved rounds: a float16 call 51 -> 30 µs, an int8 one 35 -> 16 µs). A decode step makes
74 such calls, and with the rows' scaling around each int8 one (eight small operations) a call
cost 83 µs from Python against 26 compiled. TorchScript runs the same operators in the same
order (equal to the bit); where a torch no longer has it, the same functions run as Python.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    Params = torch.ScriptObject
else:
    Params = torch.classes.quantized.LinearPackedParamsBase

log = logging.getLogger(__name__)


def _float16(x: torch.Tensor, params: Params) -> torch.Tensor:
    """`x @ weight.T + bias` on float16 weights, for a float32 `x` [..., in]."""
    out = torch.ops.quantized.linear_dynamic_fp16(x.reshape(-1, x.shape[-1]), params)
    return _shaped(out, x)


def _int8_items(x: torch.Tensor, params: Params) -> torch.Tensor:
    """On int8 weights, each item of the first dimension quantised on its own (an image in an
    encoder's batch; a row of a 2-D input). fbgemm quantises its whole input with one scale,
    from its least and greatest value, so one call per item: no image's answer depends on the
    others beside it."""
    items = x if x.dim() > 2 else x[:, None]
    outs = [torch.ops.quantized.linear_dynamic(item, params, True) for item in items.unbind(0)]
    # One item (a lone image) needs no stacking copy: ~1 ms per layer of BLIP's encoder.
    out = outs[0] if len(outs) == 1 else torch.stack(outs)
    return _shaped(out, x)


def _int8_rows(
    x: torch.Tensor,
    params: Params,
    sums: torch.Tensor,
    bias: torch.Tensor,
    levels: int,
) -> torch.Tensor:
    """On int8 weights, every row scaled to [0, 1] before one call, so that the kernel's one
    scale (from the whole input's least and greatest values, always 0 and 1) quantises each
    row on its own range: a sequence's answer does not depend on the rows beside it in a decode
    step. `sums`: each output's sum of int8 weights; `levels`: the input's quantisation steps.

    x @ W.T = lo * W.sum(1) + span * (((x - lo) / span) @ W.T) for each row's least value lo
    and range span."""
    rows = x.reshape(-1, x.shape[-1])
    # Two reductions, not torch.aminmax: at 16 rows of 768 it took 19 µs against 7.
    lo = rows.amin(dim=1, keepdim=True)
    span = rows.amax(dim=1, keepdim=True) - lo
    # A constant row (span 0) becomes zeros, exact at any scale: lo * sums is its answer.
    # The divisor's floor is float32's least normal number (TorchScript has no torch.finfo).
    scaled = (rows - lo).div_(span.clamp_min(1.1754943508222875e-38))
    # The rows span [0, 1], so the input's scale is known: fbgemm's static-input call skips
    # the min and max pass `linear_dynamic` makes to find it, with the same kernel and the
    # same quantisation (equal to the bit). CLIP ViT-B/32 at a batch of 16 (800 rows):
    # 25.2-27.6 -> 24.6-26.5 ms per image.
    out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
        scaled, 1.0 / levels, 0, params
    )
    out = torch.addcmul(bias, lo, sums).addcmul_(out, span)
    return _shaped(out, x)


def _shaped(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`out` [rows, out] as `x`'s leading dimensions (written for TorchScript: no unpacking)."""
    shape = list(x.shape[:-1])
    shape.append(out.shape[-1])
    return out.view(shape)


T = TypeVar("T", bound=Callable[..., torch.Tensor])


def compiled(code: T) -> T:
    """`code` (a function or an `nn.Module`) compiled by TorchScript, or as it is where this
    torch cannot: the same operators run either way."""
    try:
        with warnings.catch_warnings():
            # torch marks TorchScript deprecated in favour of torch.compile, which cannot
            # trace packed weights (README, Performance); the warning is for torch's users.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(code)  # type: ignore[no-any-return]
    except Exception as error:  # a torch that cannot script them runs them as Python
        log.info("%s runs from Python (TorchScript: %s)", type(code).__name__, error)
        return code


def warm_up(run: Callable[[], object]) -> None:
    """Runs `run` (a call of a compiled module) twice, in inference mode as every model call
    is. TorchScript profiles a compiled module's first run and optimises the graph on its
    second: after a load, the full-size decode step's first two runs took 124 and 243 ms
    against 15 later, the text tower's 139 and 95 against 10-15 (Intel Xeon). Called at load,
    so that the first caption and the first `!find` do not pay it."""
    with torch.inference_mode():
        for _ in range(2):
            run()


float16 = compiled(_float16)
int8_items = compiled(_int8_items)
int8_rows = compiled(_int8_rows)
