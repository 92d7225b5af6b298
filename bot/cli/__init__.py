"""The command line: `python -m bot [run|caption|find] ...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:  # the heavy imports wait until a command needs them
    from PIL import Image

    from bot.vision.service import VisionService

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
    return _run_models(_caption(args.images, args.prompt, settings))


def find_command(args: argparse.Namespace, settings: Settings) -> int:
    return _run_models(_find(args.query, args.paths, args.top, settings))


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.check import check

    return check(settings)


def download_models_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.check import download_models

    return download_models(settings)


def _run_models(command: Coroutine[Any, Any, int]) -> int:
    """Runs a one-shot model command; a checkpoint that cannot load is one line, status 1."""
    from bot.vision.checkpoints import ModelLoadError

    try:
        return asyncio.run(command)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


@contextlib.asynccontextmanager
async def _vision(settings: Settings) -> AsyncIterator[VisionService]:
    from bot.vision.service import VisionService
    from bot.workers import Workers

    workers = Workers()
    service = VisionService(settings, workers)
    try:
        yield service
    finally:
        await service.close()
        workers.shutdown()


async def _open(service: VisionService, path: str) -> Image.Image | None:
    """The image, or None after reporting `PATH: reason` on stderr."""
    from bot.images.decode import ImageError, load_image_file

    try:
        return await service.workers.run("prep", load_image_file, path, service.limits)
    except ImageError as exc:
        print(f"{path}: {exc}", file=sys.stderr, flush=True)
        return None


async def _caption(paths: list[str], prompt: str | None, settings: Settings) -> int:
    failed = False
    async with _vision(settings) as service:
        for path in paths:
            image = await _open(service, path)
            if image is None:
                failed = True
                continue
            print(f"{path}\t{await service.caption(image, prompt)}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


async def _find(query: str, paths: list[str], top: int | None, settings: Settings) -> int:
    failed = False
    scored: list[tuple[float, str]] = []
    async with _vision(settings) as service:
        query_vector = (await service.embed_text([query]))[0]
        files = list(expand_paths(paths))
        for start in range(0, len(files), FIND_CHUNK):
            names, images = [], []
            for name in files[start : start + FIND_CHUNK]:
                image = await _open(service, name)
                if image is None:
                    failed = True
                else:
                    names.append(name)
                    images.append(image)
            vectors = await service.embed_images(images)
            scored.extend(zip((vectors @ query_vector).tolist(), names, strict=True))
    scored.sort(key=lambda pair: -pair[0])  # stable: equal scores keep the order given
    for score, name in scored[:top]:
        print(f"{score:.4f}\t{name}")
    return EXIT_FAILED if failed else EXIT_OK


def expand_paths(paths: list[str]) -> Iterator[str]:
    """Files as given; folders walked recursively for files with image extensions."""
    from bot.images.decode import IMAGE_EXTENSIONS

    for raw in paths:
        folder = Path(raw)
        if not folder.is_dir():
            yield raw
            continue
        for found in sorted(p for p in folder.rglob("*") if p.is_file()):
            if found.suffix.lower() in IMAGE_EXTENSIONS:
                yield os.path.join(raw, found.relative_to(folder))
