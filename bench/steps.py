"""What one caption decode step costs: BLIP's `generate()` against the service's decode loop.

    python bench/steps.py                       # batches of 1, 8 and 16, the auto dtype
    python bench/steps.py --dtype float32 --weights float32,float16,int8-rows

Full-size blip-image-captioning-base architecture, random weights (bench/random_models.py),
one photo's image embedding repeated. Each side decodes the same number of tokens per round;
`generate()` is timed step by step through a streamer, the decode loop step by step. Rounds
alternate between the two, so a noisy machine slows both alike; the median step is printed,
and the fastest round's median beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from bench.run import models_dir  # noqa: E402
from bot.vision.blip import Captioner  # noqa: E402
from bot.vision.decoder import TextDecoder  # noqa: E402
from bot.vision.devices import (  # noqa: E402
    configure_threads,
    dtype_name,
    packed_weights,
    resolve_dtype,
)
from bot.vision.packed import Kind, cache_dtype, step_kind  # noqa: E402
from bot.vision.running import Decoding, RunningBatch  # noqa: E402


class StepClock(BaseStreamer):
    """`generate()` hands each new token to its streamer: one timestamp per step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass

    def steps_ms(self) -> list[float]:
        # The first put is the prompt, the second follows the first (prefill) step.
        return [(b - a) * 1000 for a, b in zip(self.times[1:], self.times[2:], strict=False)]


def generate_steps(captioner: Captioner, embeds: torch.Tensor, tokens: int) -> list[float]:
    text = captioner.model.config.text_config
    clock = StepClock()
    with torch.inference_mode():
        captioner.model.text_decoder.generate(
            input_ids=torch.full((embeds.shape[0], 1), int(text.bos_token_id)),
            encoder_hidden_states=embeds,
            eos_token_id=int(text.sep_token_id),
            pad_token_id=int(text.pad_token_id),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            streamer=clock,
        )
    return clock.steps_ms()


def loop_steps(
    captioner: Captioner, decoder: TextDecoder, embeds: torch.Tensor, tokens: int
) -> list[float]:
    batch = RunningBatch(decoder, captioner.stop_token)
    start = [captioner.start_token]
    sequences = [Decoding(i, list(start), tokens, tokens) for i in range(embeds.shape[0])]
    with torch.inference_mode():
        batch.join(sequences, embeds)
    times = []
    while len(batch):
        started = time.perf_counter()
        batch.step()
        times.append((time.perf_counter() - started) * 1000)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument(
        "--weights",
        default="auto",
        help="the decode loop's linear weights, one row each, comma-separated: auto (the "
        "service's), float32, float16 or int8-rows (packed: bot/vision/packed.py); a packed "
        "kind may name the images' keys and values after a colon (int8-rows:float32), "
        "else the service's",
    )
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--threads", type=int, help="torch threads (default: the service's)")
    parser.add_argument("--models", type=Path, default=Path.home() / ".cache" / "glimpse-bench")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    device = torch.device("cpu")
    configure_threads(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = resolve_dtype(args.dtype, device)
    blip, _ = models_dir(args.models)
    packed = packed_weights(args.dtype, device)
    rows = [row.partition(":") for row in args.weights.split(",")]
    kinds = [(step_kind() if packed else "float32") if k == "auto" else k for k, _, _ in rows]
    caches = [
        c or (dtype_name(cache_dtype()) if k != "float32" else "")
        for k, (_, _, c) in zip(kinds, rows, strict=True)
    ]
    unknown = (set(kinds) - {"float32", "float16", "int8-rows"}) | (
        set(caches) - {"", "float32", "bfloat16"}
    )
    if unknown:
        parser.error(f"--weights: unknown {', '.join(sorted(unknown))}")
    # Loaded unpacked: `generate()` needs the text decoder's own linear layers, which a packed
    # captioner lets go of; each decode loop packs its own copies.
    captioner = Captioner.load(str(blip), device, dtype, args.tokens)
    decoders = {
        f"loop, {kind} {cache}".rstrip(): TextDecoder(
            captioner.model.text_decoder,
            steps=None if kind == "float32" else cast(Kind, kind),
            cross_dtype=getattr(torch, cache) if cache else None,
        )
        for kind, cache in zip(kinds, caches, strict=True)
    }
    torch.manual_seed(0)
    with torch.inference_mode():
        pixels = torch.randn(1, 3, 384, 384, dtype=dtype)
        embeds = captioner.model.vision_model(pixel_values=pixels)[0]
    print(f"dtype {dtype}, threads {torch.get_num_threads()}")
    for size in [int(b) for b in args.batches.split(",")]:
        batch_embeds = embeds.expand(size, -1, -1).contiguous()
        timings: dict[str, list[list[float]]] = {name: [] for name in ["generate()", *decoders]}
        for _ in range(args.rounds):
            timings["generate()"].append(generate_steps(captioner, batch_embeds, args.tokens))
            for name, decoder in decoders.items():
                timings[name].append(loop_steps(captioner, decoder, batch_embeds, args.tokens))
        for name, rounds in timings.items():
            median = statistics.median(t for r in rounds for t in r)
            best = min(statistics.median(r) for r in rounds)
            print(f"batch {size:2} {name:26} {median:7.1f} ms/step (fastest round {best:.1f})")


if __name__ == "__main__":
    main()
