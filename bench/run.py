"""Benchmark: the vision service against the seed's reference path, side by side, as ratios.

    python bench/run.py                  # CPU
    python bench/run.py --quick          # under 3 minutes on a 2-core CPU
    python bench/run.py --device cuda    # a GPU

Full-size BLIP (blip-image-captioning-base) and CLIP (clip-vit-base-patch32) architectures with
random weights: the cost is the architecture's and the generated length's, not the weights', and
nothing is downloaded. Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from bench.photos import jpeg, photo  # noqa: E402
from bench.random_models import save_random_blip, save_random_clip  # noqa: E402
from bench.seed import SeedPath  # noqa: E402
from bot.config import parse_settings  # noqa: E402
from bot.images.decode import ImageLimits  # noqa: E402
from bot.images.loader import ImageLoader  # noqa: E402
from bot.index.refs import ImageRef  # noqa: E402
from bot.index.store import IndexStore  # noqa: E402
from bot.vision.service import VisionService  # noqa: E402
from bot.workers import Workers  # noqa: E402

TOKENS = 20
CONCURRENT_CAPTIONS = 16
CHANNELS = 200


def models_dir(cache: Path) -> tuple[Path, Path]:
    blip, clip = cache / "blip-base-random", cache / "clip-base-random"
    if not (blip / "model.safetensors").exists():
        save_random_blip(blip)
    if not (clip / "model.safetensors").exists():
        save_random_clip(clip)
    return blip, clip


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
    return VisionService(settings, Workers())


async def pin_caption_length(vision: VisionService) -> None:
    """Random weights may stop early; both sides must generate exactly TOKENS tokens."""
    captioner = await vision.captioner()
    captioner.model.text_decoder.generation_config.min_new_tokens = TOKENS


async def measure_captions(vision: VisionService, images: list) -> tuple[float, list[float]]:
    """Seconds per caption with CONCURRENT_CAPTIONS in flight, and the event loop's delays."""
    await vision.caption(images[0])  # warm-up
    delays: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            delays.append(max(0.0, time.perf_counter() - before - 0.01))

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(vision.caption(image) for image in images))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick
    return elapsed / len(images), delays


async def measure_index(vision: VisionService, jpegs: list[bytes]) -> float:
    """Seconds per photo: JPEG bytes in, embedding out, as the indexer runs it."""

    loader = ImageLoader(vision.workers, ImageLimits())

    async def one(data: bytes) -> np.ndarray:
        decoded = await loader.decode(data)
        return await vision.embed_images([decoded.image], background=True)

    await one(jpegs[0])
    started = time.perf_counter()
    await asyncio.gather(*(one(data) for data in jpegs))
    return (time.perf_counter() - started) / len(jpegs)


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


def peak_rss_mb(blip: Path, clip: Path, device: str) -> float:
    """The service alone, in a fresh process: both models in the chosen dtype, 100k embeddings."""
    probe = [sys.executable, __file__, "--rss-probe", str(blip), str(clip), "--device", device]
    result = subprocess.run(probe, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


async def rss_probe(blip: Path, clip: Path, device: str) -> None:
    vision = service_for(blip, clip, device)
    await vision.start()
    with tempfile.TemporaryDirectory() as tmp:
        index = fill_index(Path(tmp) / "index.sqlite3", str(clip), 100_000, 512)
        image = photo(640, 480, 0)
        await vision.caption(image)
        await vision.embed_images([image])
        index.search((await vision.embed_text(["a photo"]))[0], set(range(1000, 1200)), top=10)
        index.close()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


async def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    blip, clip = models_dir(args.models)
    photos = [photo(640, 480, seed) for seed in range(CONCURRENT_CAPTIONS)]
    jpegs = [jpeg(photo(1280, 960, seed)) for seed in range(512 if device.type == "cuda" else 64)]
    seed_captions = 6 if args.quick else CONCURRENT_CAPTIONS
    seed_photos = 32 if args.quick else len(jpegs)

    seed = SeedPath(blip, clip, device, TOKENS)
    seed_caption_s = seed.time_per_caption(photos[:seed_captions])
    seed_index_s = seed.time_per_embedding(jpegs[:seed_photos])
    seed.close()

    vision = service_for(blip, clip, args.device)
    await vision.start()
    await pin_caption_length(vision)
    caption_s, delays = await measure_captions(vision, photos)
    index_s = await measure_index(vision, jpegs)
    batch_mean = vision.scheduler.stats.mean
    with tempfile.TemporaryDirectory() as tmp:
        finds = {}
        for count in (10_000, 100_000):
            index = fill_index(Path(tmp) / f"{count}.sqlite3", str(clip), count, 512)
            finds[count] = await measure_find(vision, index, 30 if args.quick else 100)
            index.close()
    dtype = str(vision.dtype).removeprefix("torch.")
    await vision.close()
    vision.workers.shutdown()
    rss = peak_rss_mb(blip, clip, args.device)

    delays_ms = [d * 1000 for d in delays]
    rows = [
        ("caption, 16 concurrent (s/image)", seed_caption_s, caption_s),
        ("index, 1280x960 JPEG (s/image)", seed_index_s, index_s),
    ]
    threads = torch.get_num_threads()
    print(f"device {device_name(device)}, service dtype {dtype}, torch threads {threads}")
    print(f"{'':36} {'seed':>10} {'service':>10} {'speedup':>8}")
    for name, before, after in rows:
        print(f"{name:36} {before:10.3f} {after:10.3f} {before / after:7.1f}x")
    lag_p99, lag_max = float(np.percentile(delays_ms, 99)), max(delays_ms)
    print(f"find p95: {finds[10_000]:.1f} ms over 10k, {finds[100_000]:.1f} ms over 100k")
    print(f"event loop delay: p99 {lag_p99:.1f} ms, max {lag_max:.1f} ms")
    print(f"service peak RSS {rss:.0f} MB; mean batch {batch_mean:.1f}")
    return {
        "caption_speedup": round(seed_caption_s / caption_s, 2),
        "index_speedup": round(seed_index_s / index_s, 2),
        "find_p95_ms_10k": round(finds[10_000], 2),
        "find_p95_ms_100k": round(finds[100_000], 2),
        "loop_lag_p99_ms": round(lag_p99, 2),
        "loop_lag_max_ms": round(lag_max, 2),
        "service_peak_rss_mb": round(rss, 1),
        "batch_mean": round(batch_mean, 2),
        "device": device_name(device),
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="fewer seed-path repetitions")
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
        asyncio.run(rss_probe(*args.rss_probe, args.device))
        return
    figures = asyncio.run(run(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
