"""The command line: `python -m bot [run|caption|find] ...`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bot.config import ConfigError, Settings, load_settings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FIND_CHUNK = 32


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Glimpse: a Discord bot that captions images and finds them by description.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the Discord bot (the default)")

    caption = commands.add_parser("caption", help="caption image files with the caption model")
    caption.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    caption.add_argument("--prompt", help="start each caption with this text")

    find = commands.add_parser(
        "find", help="rank image files and folders by how well they match a description"
    )
    find.add_argument("query", metavar="QUERY", help='what to look for, e.g. "a red square"')
    find.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    find.add_argument("--top", type=_positive_int, metavar="N", help="print only the N best")

    commands.add_parser(
        "check",
        help="validate the settings, load both models, caption and embed a test image "
        "(does not connect to Discord)",
    )
    commands.add_parser(
        "download-models",
        help="fetch both configured checkpoints into the model cache (HF_HOME) ahead of time",
    )
    return parser


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    # The one-shot commands print results; routine INFO lines would only bury them.
    quiet = command != "run" and settings.log_level != "DEBUG"
    setup_logging("WARNING" if quiet else settings.log_level)
    handlers: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "run": run_bot,
        "caption": caption_command,
        "find": find_command,
        "check": check_command,
        "download-models": download_models_command,
    }
    try:
        return handlers[command](args, settings)
    except KeyboardInterrupt:
        return 130


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    import transformers

    # Weight-loading bars and notices such as "torchvision not found, using PIL" are noise
    # in a bot's log; downloads keep the hub's own progress bars.
    transformers.logging.disable_progress_bar()
    if level != "DEBUG":
        transformers.logging.set_verbosity_error()


def run_bot(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run

    return run(settings)


def caption_command(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_caption(args.images, args.prompt, settings))


def find_command(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_find(args.query, args.paths, args.top, settings))


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.ops import check

    return check(settings)


def download_models_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.ops import download_models

    return download_models(settings)


async def _caption(paths: list[str], prompt: str | None, settings: Settings) -> int:
    from bot.images import ImageError, load_image_file
    from bot.loading import ModelLoadError
    from bot.service import VisionService
    from bot.workers import Workers

    workers = Workers()
    service = VisionService(settings, workers)
    failed = False
    try:
        for path in paths:
            try:
                image = await workers.run("prep", load_image_file, path, service.limits)
            except ImageError as exc:
                _report(path, exc)
                failed = True
                continue
            print(f"{path}\t{await service.caption(image, prompt)}", flush=True)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await service.close()
        workers.shutdown()
    return EXIT_FAILED if failed else EXIT_OK


async def _find(query: str, paths: list[str], top: int | None, settings: Settings) -> int:
    import numpy as np

    from bot.images import ImageError, load_image_file
    from bot.loading import ModelLoadError
    from bot.service import VisionService
    from bot.workers import Workers

    workers = Workers()
    service = VisionService(settings, workers)
    failed = False
    scored: list[tuple[float, str]] = []
    try:
        query_vector = (await service.embed_text([query]))[0]
        files = list(expand_paths(paths))
        for start in range(0, len(files), FIND_CHUNK):
            names, images = [], []
            for name in files[start : start + FIND_CHUNK]:
                try:
                    images.append(await workers.run("prep", load_image_file, name, service.limits))
                    names.append(name)
                except ImageError as exc:
                    _report(name, exc)
                    failed = True
            vectors = await service.embed_images(images)
            scored.extend(zip((vectors @ query_vector).tolist(), names, strict=True))
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await service.close()
        workers.shutdown()
    order = np.argsort([-score for score, _ in scored], kind="stable")
    for i in order[:top]:
        score, name = scored[i]
        print(f"{score:.4f}\t{name}")
    return EXIT_FAILED if failed else EXIT_OK


def expand_paths(paths: list[str]) -> Iterator[str]:
    """Files as given; folders walked recursively for files with image extensions."""
    from bot.images import IMAGE_EXTENSIONS

    for raw in paths:
        folder = Path(raw)
        if not folder.is_dir():
            yield raw
            continue
        for found in sorted(p for p in folder.rglob("*") if p.is_file()):
            if found.suffix.lower() in IMAGE_EXTENSIONS:
                yield os.path.join(raw, found.relative_to(folder))


def _report(path: str, error: Exception) -> None:
    print(f"{path}: {error}", file=sys.stderr, flush=True)
