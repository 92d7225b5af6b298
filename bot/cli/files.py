"""`python -m bot caption` and `python -m bot find`: the models on image files, no Discord."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from bot import wording
from bot.config import ConfigError, Settings
from bot.images.decode import IMAGE_EXTENSIONS, ImageError
from bot.images.frames import Frames
from bot.images.loader import ImageLoader, limits_from
from bot.index.embedding import embed_frames
from bot.vision.checkpoints import ModelLoadError
from bot.vision.service import VisionService
from bot.workers import Workers

EXIT_OK, EXIT_FAILED = 0, 1
FIND_CHUNK = 32


def caption_files(paths: list[str], prompt: str | None, settings: Settings) -> int:
    files, failed = _image_files(paths)
    status = _run(_caption(files, prompt, settings)) if files else EXIT_OK
    return EXIT_FAILED if failed else status


def find_files(query: str, paths: list[str], top: int | None, settings: Settings) -> int:
    files, failed = _image_files(paths)
    status = _run(_find(query, files, top, settings)) if files else EXIT_OK
    return EXIT_FAILED if failed else status


def _image_files(paths: list[str]) -> tuple[list[str], bool]:
    """The files to read, and whether a folder held no image (each reported on stderr)."""
    files, empty = expand_paths(paths)
    for folder in empty:
        print(f"{folder}: {wording.NO_IMAGES_FOUND}", file=sys.stderr, flush=True)
    return files, bool(empty)


def _run(command: Coroutine[Any, Any, int]) -> int:
    """Runs a one-shot model command; a checkpoint that cannot load, or a DEVICE that is not
    there, is one line, status 1."""
    try:
        return asyncio.run(command)
    except (ModelLoadError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


@contextlib.asynccontextmanager
async def _models(settings: Settings) -> AsyncIterator[tuple[VisionService, ImageLoader]]:
    workers = Workers()
    service = VisionService(settings, workers)
    try:
        yield service, ImageLoader(workers, limits_from(settings))
    finally:
        await service.close()
        workers.shutdown()


async def _open(loader: ImageLoader, path: str) -> Frames | None:
    """The image (an animation's frames), or None after reporting `PATH: reason` on stderr."""
    try:
        return await loader.open_file(path)
    except ImageError as exc:
        print(f"{path}: {exc.file_reason}", file=sys.stderr, flush=True)
        return None


async def _caption(paths: list[str], prompt: str | None, settings: Settings) -> int:
    failed = False
    async with _models(settings) as (service, loader):
        for path in paths:
            image = await _open(loader, path)
            if image is None:
                failed = True
                continue
            # An animation is captioned from its first frame that is not blank.
            print(f"{path}\t{await service.caption(image.caption, prompt)}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


async def _find(query: str, files: list[str], top: int | None, settings: Settings) -> int:
    failed = False
    scored: list[tuple[float, str]] = []
    async with _models(settings) as (service, loader):
        query_vector = (await service.embed_text([query]))[0]
        scores = await service.text_scores()
        for start in range(0, len(files), FIND_CHUNK):
            names, images = [], []
            for name in files[start : start + FIND_CHUNK]:
                image = await _open(loader, name)
                if image is None:
                    failed = True
                else:
                    names.append(name)
                    images.append(image.embedded)
            # An animation scores its best frame's score.
            vectors = await embed_frames(service, images)
            best = [float((frames @ query_vector).max()) for frames in vectors]
            scored.extend(zip(best, names, strict=True))
    scored.sort(key=lambda pair: -pair[0])  # stable: equal scores keep the order given
    for score, name in scored[:top]:
        # CLIP's cosine, or SigLIP's probability as a fraction (bot/vision/scores.py)
        print(f"{scores.shown(score):.4f}\t{name}")
    return EXIT_FAILED if failed else EXIT_OK


def expand_paths(paths: list[str]) -> tuple[list[str], list[str]]:
    """Files as given, and folders walked recursively for files with image extensions; then
    the folders in which none was found."""
    files: list[str] = []
    empty: list[str] = []
    for raw in paths:
        folder = Path(raw)
        if not folder.is_dir():
            files.append(raw)
            continue
        found = [
            os.path.join(raw, path.relative_to(folder))
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
        ]
        files.extend(found)
        if not found:
            empty.append(raw)
    return files, empty
