"""`python -m bot check`: will the bot start, and do its models work? (No Discord needed.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from bot.config import ConfigError, Settings

EXIT_OK, EXIT_FAILED = 0, 1


def reference_image(size: int = 128) -> Image.Image:
    """A red disc on light grey: what the tiny test models were trained on, and plain enough
    for any captioning model to name."""
    image = Image.new("RGB", (size, size), (235, 235, 235))
    margin = size // 4
    ImageDraw.Draw(image).ellipse(
        (margin, margin, size - margin, size - margin), fill=(220, 30, 30)
    )
    return image


class Report:
    """OK/FAIL lines as they happen, printed to stdout; `failures` counts the FAILs."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.failures = 0

    def ok(self, what: str, detail: str) -> None:
        self.out(f"OK    {what}: {detail}")

    def fail(self, message: str) -> None:
        self.failures += 1
        self.out(f"FAIL  {message}")

    def note(self, text: str) -> None:
        self.out(f"      {text}")


def check(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Validates what the settings point at, loads both models, captions and embeds a test
    image. Prints one line per step; exit status 0 when every step passed."""
    report = Report(out)
    report.ok("settings", "valid")
    if settings.discord_token is None:
        report.fail("DISCORD_TOKEN: is required to run the bot (see .env.example)")
    else:
        report.ok("DISCORD_TOKEN", "set (not shown)")
    _check_data_dir(settings.data_dir, report)
    asyncio.run(_check_models(settings, report))
    out("check passed" if not report.failures else f"check failed: {report.failures} problem(s)")
    return EXIT_FAILED if report.failures else EXIT_OK


def _check_data_dir(data_dir: Path, report: Report) -> None:
    """Writable, or creatable by the bot at start; checked without creating anything."""
    from bot.index.schema import sqlite_too_old

    problem = _data_dir_problem(data_dir)
    if too_old := sqlite_too_old():
        report.fail(f"DATA_DIR: cannot use {str(data_dir)!r}: {too_old}")
    elif problem:
        report.fail(f"DATA_DIR: cannot write to {str(data_dir)!r}: {problem}")
    elif (index := data_dir / "index.sqlite3").exists():
        if problem := _index_problem(index):
            report.fail(f"DATA_DIR: cannot use {str(data_dir)!r}: {problem}")
        else:
            report.ok("DATA_DIR", f"{data_dir.resolve()} is writable, its index readable")
    elif data_dir.is_dir():
        report.ok("DATA_DIR", f"{data_dir.resolve()} is writable")
    else:
        report.ok("DATA_DIR", f"{data_dir.resolve()} does not exist yet; the bot will create it")


def _data_dir_problem(data_dir: Path) -> str | None:
    if data_dir.is_dir():
        try:
            with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".check-"):
                return None
        except OSError as exc:
            return exc.strerror or str(exc)
    existing = data_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{str(existing)!r} is not writable, so the folder cannot be created"
    return None


def _index_problem(index: Path) -> str | None:
    """What the start would refuse in an index file kept from before, read without changing
    it: one of a newer version (a rollback), not a database, or not ours to write."""
    from bot.index.schema import SCHEMA_VERSION

    if not os.access(index, os.R_OK | os.W_OK):
        return f"{str(index)!r} is not readable and writable by this user"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        return f"{str(index)!r}: {exc}"
    if version > SCHEMA_VERSION:  # as the start says it (bot.index.schema)
        return (
            f"{index} has schema version {version}, newer than this code's "
            f"{SCHEMA_VERSION}: upgrade the bot"
        )
    return None


async def _check_models(settings: Settings, report: Report) -> None:
    from bot.vision.checkpoints import ModelLoadError
    from bot.vision.service import VisionService
    from bot.workers import Workers

    workers = Workers()
    try:
        vision = VisionService(settings, workers)
    except ConfigError as exc:  # DEVICE=cuda on a host without CUDA
        report.fail(str(exc))
        workers.shutdown()
        return
    info = vision.info
    report.ok("device", f"{info.device}, dtype {info.dtype}")
    image = reference_image()
    try:
        try:
            took = await _timed(vision.captioner())
            report.ok("caption model", f"{info.caption_model} loaded in {took:.1f} s")
            started = time.perf_counter()
            caption = await vision.caption(image)
            took = time.perf_counter() - started
            report.ok("caption", f"{caption!r} for the test image (a red disc) in {took:.2f} s")
        except ModelLoadError as exc:
            report.fail(str(exc))
        try:
            took = await _timed(vision.embedder())
            report.ok("search model", f"{info.search_model} loaded in {took:.1f} s")
            started = time.perf_counter()
            image_vector = (await vision.embed_images([image]))[0]
            text_vectors = await vision.embed_text(["a red circle", "a green square"])
            took = time.perf_counter() - started
            meaning = await vision.text_scores()
            cosines = text_vectors @ image_vector
            red, green = (meaning.text(meaning.shown(float(c))) for c in cosines)
            report.ok(
                "embedding",
                f"dimension {image_vector.shape[0]}, in {took:.2f} s; the test image scores "
                f"{red} against 'a red circle', {green} against 'a green square'",
            )
        except ModelLoadError as exc:
            report.fail(str(exc))
    finally:
        await vision.close()
        workers.shutdown()


async def _timed(loading: Any) -> float:
    started = time.perf_counter()
    await loading
    return time.perf_counter() - started
