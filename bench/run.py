"""Benchmark: the vision service against the seed's reference path, side by side, as ratios.

    python bench/run.py                  # CPU
    python bench/run.py --quick          # fewer seed-path repetitions
    python bench/run.py --dtype float32  # the service without reduced precision
    python bench/run.py --device cuda    # a GPU

Full-size BLIP (blip-image-captioning-base), CLIP (clip-vit-base-patch32) and SigLIP
(siglip-base-patch16-224) architectures with random weights: the cost is the architecture's and
the generated length's, not the weights', and nothing is downloaded. Both sides run with the
same torch thread count and generate exactly TOKENS tokens per caption. Prints a table and, as
its last line, one JSON object.

Captions are measured three ways (bench/captions.py): 16 concurrent requests, 8 requests one
at a time, and 16 requests arriving 100 ms apart. The service's first burst of 16 after its
load is measured apart (`caption_first_burst_s`): it makes the decode cache that the service
then keeps while the model is loaded, so the rows measure every burst after it. The seed's
path serves one caption at a time in every case, so its time per caption is measured once, on
one-at-a-time requests; with `--quick` its staggered run is computed from those durations
instead of run again. Half of the seed's captions and photos are measured before the service,
half after it: on a shared machine whose neighbours' load comes and goes, both sides then see
the same spans. Indexing goes through the bot's own background indexer (bench/indexing.py);
how busy it kept the model thread and the decoding threads says which bound it (bench/lanes.py).
`batch_mean` is the mean number of captions per decode step in the concurrent and staggered
runs. SigLIP ViT-B/16, the better search model, is measured beside CLIP the same way
(indexing, `!find` p95), with no seed-path counterpart: its rows show what choosing it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402

from bench import captions, random_models  # noqa: E402
from bench.indexing import Indexed, index_seconds  # noqa: E402
from bench.lanes import TimedWorkers  # noqa: E402
from bench.photos import jpeg, photo  # noqa: E402
from bench.seed import SeedPath, on_own_thread  # noqa: E402
from bot.config import parse_settings  # noqa: E402
from bot.index.refs import ImageRef  # noqa: E402
from bot.index.store import IndexStore  # noqa: E402
from bot.vision.devices import configure_threads, precision_name  # noqa: E402
from bot.vision.service import VisionService  # noqa: E402

TOKENS = 20
# The last line's keys, exactly: the first benchmark's, `device`, and those iteration-level
# batching added. The figures that explain them go on the line before, after "details".
KEYS = (
    "caption_speedup", "index_speedup", "find_p95_ms_10k", "find_p95_ms_100k",
    "loop_lag_p99_ms", "loop_lag_max_ms", "service_peak_rss_mb", "batch_mean", "device",
    "caption_lone_speedup", "caption_staggered_speedup", "caption_staggered_p95_s", "dtype",
    "threads",
)  # fmt: skip
CONCURRENT_CAPTIONS = 16
CHANNELS = 200


def made(folder: Path, save: Callable[[Path], Path]) -> Path:
    """`folder` as `save` makes it, remade when the code that makes it or transformers changed
    since it was saved (an older one may hold another tokenizer, so other query lengths)."""
    made_by = Path(random_models.__file__).read_bytes() + transformers.__version__.encode()
    stamp, marker = hashlib.sha256(made_by).hexdigest()[:12], folder / "made-by"
    if not (marker.exists() and marker.read_text() == stamp):
        shutil.rmtree(folder, ignore_errors=True)
        save(folder)
        marker.write_text(stamp)
    return folder


def models_dir(cache: Path) -> tuple[Path, Path]:
    blip = made(cache / "blip-base-random", random_models.save_random_blip)
    return blip, made(cache / "clip-base-random", random_models.save_random_clip)


def siglip_dir(cache: Path) -> Path:
    return made(cache / "siglip-base-random", random_models.save_random_siglip)


def service_for(blip: Path, clip: Path, device: str, **env: str) -> VisionService:
    settings = parse_settings(
        {
            "CAPTION_MODEL": str(blip),
            "SEARCH_MODEL": str(clip),
            "DEVICE": device,
            "CAPTION_MAX_TOKENS": str(TOKENS),
            **env,
        }
    )
    return VisionService(settings, TimedWorkers())


async def pin_caption_length(vision: VisionService) -> None:
    """Random weights may stop early; both sides must generate exactly TOKENS tokens."""
    captioner = await vision.captioner()
    captioner.model.text_decoder.generation_config.min_new_tokens = TOKENS


def fill_index(path: Path, model_id: str, count: int, dim: int) -> IndexStore:
    index = IndexStore(path, model_id, per_channel=count)
    rng = np.random.default_rng(count)
    for start in range(0, count, 25_000):
        n = min(25_000, count - start)
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        refs = [
            ImageRef(1, 1000 + (start + i) % CHANNELS, 10_000 + start + i, 1, 7, time.time())
            for i in range(n)
        ]
        index.add_pending(refs)
        index.add((ref, f"{ref.message_id:x}", vec) for ref, vec in zip(refs, vectors, strict=True))
    return index


async def measure_find(vision: VisionService, index: IndexStore, queries: int) -> float:
    """p95 ms of a server-wide `!find`: text embedding, then search through the project's index."""
    channels = set(range(1000, 1000 + CHANNELS))
    timings = []
    for i in range(queries):
        started = time.perf_counter()
        query = (await vision.embed_text([f"a photo of thing number {i}"]))[0]
        index.search(query, channels, top=10)
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings[1:], 95))


def peak_rss_mb(blip: Path, clip: Path, device: str, dtype: str) -> float:
    """The service alone, in a fresh process: both models in the chosen dtype, 100k embeddings,
    a burst of captions and a batch of photos as big as the service batches."""
    probe = [sys.executable, __file__, "--rss-probe", str(blip), str(clip)]
    probe += ["--device", device, "--dtype", dtype]
    result = subprocess.run(probe, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


async def rss_probe(blip: Path, clip: Path, device: str, dtype: str) -> None:
    vision = service_for(blip, clip, device, DTYPE=dtype)
    await vision.start()
    with tempfile.TemporaryDirectory() as tmp:
        index = fill_index(Path(tmp) / "index.sqlite3", str(clip), 100_000, 512)
        # The benchmark's heaviest moments: a full burst of captions (the decode cache for all
        # of them) and a full batch of photos to embed.
        images = [photo(640, 480, i) for i in range(vision.scheduler.max_batch)]
        await asyncio.gather(*(vision.caption(image) for image in images))
        await vision.embed_images(images)
        index.search((await vision.embed_text(["a photo"]))[0], set(range(1000, 1200)), top=10)
        index.close()
    print(own_peak_rss_mb())


def own_peak_rss_mb() -> float:
    """This process's peak RSS since it started. Not `ru_maxrss`: Linux carries that over
    `exec` from the process that spawned this one (here, the whole benchmark's)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    configure_threads(device)  # the service's thread count, for the seed's path too
    blip, clip = models_dir(args.models)
    photos = [photo(640, 480, seed) for seed in range(CONCURRENT_CAPTIONS)]
    jpegs = [jpeg(photo(1280, 960, seed)) for seed in range(512 if device.type == "cuda" else 64)]
    seed_path = on_own_thread(lambda: SeedPath(blip, clip, device, TOKENS))
    seed_photos = photos[: captions.LONE_REQUESTS if args.quick else None]
    seed_jpegs = jpegs[: 32 if args.quick else None]
    before = on_own_thread(lambda: seed_half(seed_path, seed_photos[::2], seed_jpegs[::2]))
    vision = service_for(blip, clip, args.device, DTYPE=args.dtype)
    service = await measure_service(vision, photos, jpegs)
    queries = 30 if args.quick else 100
    finds = await measure_finds(vision, str(clip), queries)
    dtype = service_dtype(vision)
    await vision.close()
    # Its threads end first: torch's OpenMP teams left on them slowed the seed's steps too.
    vision.workers.shutdown()
    after = on_own_thread(lambda: seed_half(seed_path, seed_photos[1::2], seed_jpegs[1::2]))
    seed = on_own_thread(lambda: seed_figures(seed_path, before, after, photos, args.quick))
    siglip = await measure_search_model(
        service_for(
            blip, siglip_dir(args.models), args.device, DTYPE=args.dtype, PRELOAD_MODELS="false"
        ),
        jpegs,
        queries,
    )
    rss = peak_rss_mb(blip, clip, args.device, args.dtype)
    return report(seed, service, finds, rss, dtype, device, siglip)


async def measure_finds(vision: VisionService, model_id: str, queries: int) -> dict[int, float]:
    """`!find` p95 over 10,000 and 100,000 indexed images of the search model's dimension."""
    dim = (await vision.embed_text(["a photo"])).shape[1]
    finds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (10_000, 100_000):
            index = fill_index(Path(tmp) / f"{count}.sqlite3", model_id, count, dim)
            finds[count] = await measure_find(vision, index, queries)
            index.close()
    return finds


async def measure_search_model(
    vision: VisionService, jpegs: list[bytes], queries: int
) -> dict[str, Any]:
    """Another search model on its own: indexing through the bot's indexer, and `!find`."""
    try:
        await vision.embed_images([photo(640, 480, 99)], background=True)  # load, warm up
        with tempfile.TemporaryDirectory() as tmp:
            indexed = await index_seconds(vision, jpegs, Path(tmp))
        finds = await measure_finds(vision, vision.settings.search_model, queries)
    finally:
        await vision.close()
        vision.workers.shutdown()
    return {"index_s": indexed.s_per_image, "finds": finds}


def seed_half(seed: SeedPath, photos: list[Image.Image], jpegs: list[bytes]) -> dict[str, Any]:
    """Half of the seed's measurements: each caption's seconds, and seconds per photo indexed
    (each call warms up first)."""
    seed.caption(photos[0])
    return {"durations": seed.caption_durations(photos), "index_s": seed.time_per_embedding(jpegs)}


def seed_figures(
    seed: SeedPath,
    before: dict[str, Any],
    after: dict[str, Any],
    photos: list[Image.Image],
    quick: bool,
) -> dict[str, float]:
    durations = before["durations"] + after["durations"]
    staggered_photos = photos[: captions.STAGGERED_REQUESTS]
    if quick:
        staggered = captions.seed_staggered_from(durations, len(staggered_photos))
    else:
        staggered = captions.seed_staggered(seed.caption, staggered_photos)
    seed.close()
    return {
        "caption_s": sum(durations) / len(durations),
        "staggered_s": staggered,
        "index_s": (before["index_s"] + after["index_s"]) / 2,
    }


async def measure_service(
    vision: VisionService, photos: list[Image.Image], jpegs: list[bytes]
) -> dict[str, Any]:
    await vision.start()
    await pin_caption_length(vision)
    await vision.caption(photos[0])  # warm-up
    # The first burst after a load is measured apart: it makes the cache for 16 captions, which
    # the service keeps while the model is loaded (bot/vision/captions.py), and on a GPU cuBLAS
    # picks kernels for each new shape. The rows measure the bursts after it.
    first_burst_s, _ = await captions.concurrent(vision, photos)
    steps = vision.scheduler.stats["caption"]
    before = steps.batches, steps.items
    caption_s, delays = await captions.concurrent(vision, photos)
    staggered = await captions.staggered(vision, photos[: captions.STAGGERED_REQUESTS])
    batch_mean = (steps.items - before[1]) / max(1, steps.batches - before[0])
    lone_s = await captions.lone(vision, photos[: captions.LONE_REQUESTS])
    await vision.embed_images([photo(640, 480, 99)], background=True)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        indexed = await index_seconds(vision, jpegs, Path(tmp))
    return {
        "caption_s": caption_s,
        "first_burst_s": first_burst_s,
        "delays_ms": [d * 1000 for d in delays],
        "staggered": staggered,
        "batch_mean": batch_mean,
        "lone_s": lone_s,
        "indexed": indexed,
    }


def service_dtype(vision: VisionService) -> str:
    """The service's dtype, and its weights' where they are packed."""
    return precision_name(vision.dtype, vision.packed_weights)


def report(
    seed: dict[str, float],
    service: dict[str, Any],
    finds: dict[int, float],
    rss: float,
    dtype: str,
    device: torch.device,
    siglip: dict[str, Any],
) -> dict[str, object]:
    staggered: captions.Staggered = service["staggered"]
    indexed: Indexed = service["indexed"]
    rows = [
        ("caption, 16 concurrent (s/image)", seed["caption_s"], service["caption_s"]),
        ("caption, one at a time (s/image)", seed["caption_s"], service["lone_s"]),
        ("caption, 16 arriving 100 ms apart (s)", seed["staggered_s"], staggered.makespan_s),
        ("index, 1280x960 JPEG (s/image)", seed["index_s"], indexed.s_per_image),
    ]
    threads = torch.get_num_threads()
    print(f"device {device_name(device)}, service dtype {dtype}, torch threads {threads}")
    print(f"{'':38} {'seed':>10} {'service':>10} {'speedup':>8}")
    for name, before, after in rows:
        print(f"{name:38} {before:10.3f} {after:10.3f} {before / after:7.1f}x")
    delays_ms = service["delays_ms"]
    lag_p99, lag_max = float(np.percentile(delays_ms, 99)), max(delays_ms)
    print(
        f"16 concurrent captions, the first burst after a load: {service['first_burst_s']:.3f}"
        " s/image (it makes the decode cache)"
    )
    print(f"staggered captions: p95 latency {staggered.p95_s:.2f} s")
    print(
        f"indexing: the model thread busy {indexed.model_busy:.0%} of the time, "
        f"{indexed.prep_busy:.1f} decoding threads busy on average"
    )
    print(f"find p95: {finds[10_000]:.1f} ms over 10k, {finds[100_000]:.1f} ms over 100k")
    siglip_finds = siglip["finds"]
    print(
        f"SigLIP ViT-B/16 search model: index {siglip['index_s'] * 1000:.0f} ms/image (CLIP "
        f"{indexed.s_per_image * 1000:.0f}); find p95 {siglip_finds[10_000]:.1f} ms over 10k, "
        f"{siglip_finds[100_000]:.1f} ms over 100k"
    )
    print(f"event loop delay: p99 {lag_p99:.1f} ms, max {lag_max:.1f} ms")
    print(f"service peak RSS {rss:.0f} MB; captions per decode step {service['batch_mean']:.1f}")
    return {
        "caption_speedup": round(seed["caption_s"] / service["caption_s"], 2),
        "index_speedup": round(seed["index_s"] / indexed.s_per_image, 2),
        "find_p95_ms_10k": round(finds[10_000], 2),
        "find_p95_ms_100k": round(finds[100_000], 2),
        "loop_lag_p99_ms": round(lag_p99, 2),
        "loop_lag_max_ms": round(lag_max, 2),
        "service_peak_rss_mb": round(rss, 1),
        "batch_mean": round(service["batch_mean"], 2),
        "device": device_name(device),
        "caption_lone_speedup": round(seed["caption_s"] / service["lone_s"], 2),
        "caption_lone_s": round(service["lone_s"], 3),
        "caption_staggered_speedup": round(seed["staggered_s"] / staggered.makespan_s, 2),
        "caption_staggered_p95_s": round(staggered.p95_s, 3),
        "caption_first_burst_s": round(service["first_burst_s"], 3),
        "dtype": dtype,
        "threads": threads,
        "index_ms_per_image": round(indexed.s_per_image * 1000, 1),
        "index_model_busy": round(indexed.model_busy, 2),
        "index_prep_threads_busy": round(indexed.prep_busy, 2),
        "siglip_index_ms_per_image": round(siglip["index_s"] * 1000, 1),
        "siglip_find_p95_ms_10k": round(siglip_finds[10_000], 2),
        "siglip_find_p95_ms_100k": round(siglip_finds[100_000], 2),
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="fewer seed-path repetitions")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="the service's DTYPE (the seed's path is always float32)",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=Path.home() / ".cache" / "glimpse-bench",
        help="where the random-weight checkpoints are saved and reused",
    )
    parser.add_argument("--rss-probe", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    random.seed(0)
    if args.rss_probe:
        blip, clip = args.rss_probe
        asyncio.run(rss_probe(blip, clip, args.device, args.dtype))
        return
    print(*last_lines(asyncio.run(run(args))), sep="\n")


def last_lines(figures: dict[str, object]) -> tuple[str, str]:
    """The details line, then the last line: one JSON object with exactly `KEYS`."""
    details = {key: value for key, value in figures.items() if key not in KEYS}
    return "details " + json.dumps(details), json.dumps({key: figures[key] for key in KEYS})


if __name__ == "__main__":
    main()
