"""The hostile image corpus through the running bot: `!caption` replies, indexing, memory, disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bot.chat.sources import IMAGE_EXTENSIONS
from tests.e2e.harness import World, bot_settings, indexed, is_indexed, running, shape_png
from tests.fakediscord import FakeDiscord
from tests.image_corpus import CorpusItem, build_corpus

MAX_BYTES = 1_048_576
MAX_GROWTH_MB = 300
CAPTION = re.compile(r"^a( (red|green|blue|yellow|circle|square|triangle))+$")

CAPTIONED = (
    "jpeg", "jpeg_corrupt_exif", *(f"orientation_{n}" for n in range(1, 9)), "jpeg_cmyk",
    "jpeg_grey", "jpeg_progressive", "jpeg_large", "png_16bit", "png_palette_transparent",
    "png_rgba", "png_la", "png_1x1", "gif_animated_500", "webp_animated", "webp", "mismatch",
    "path_traversal", "bmp", "avif",
)  # fmt: skip

# Every corpus item, with the outcome the bot must give it: "ok" (captioned, indexed), or the
# refusal's code and words the reply must contain to name the problem.
EXPECTED: dict[str, tuple[str, str]] = {
    "empty": ("empty", "empty"),
    "too_large": ("too_large", "limit is"),
    "bomb_png": ("bomb", "too large to open safely"),
    "bomb_png_warning": ("bomb", "too large to open safely"),
    "bomb_gif": ("bomb", "too large to open safely"),
    "bomb_webp_vp8l": ("bomb", "too large to open safely"),
    "bomb_webp_vp8x": ("bomb", "too large to open safely"),
    "bomb_jpeg_header": ("bomb", "too large to open safely"),
    "huge_header_truncated": ("too_many_pixels", "megapixels"),
    "aspect_ratio": ("aspect_ratio", "long and thin"),
    "truncated_jpeg": ("truncated", "cut off"),
    "truncated_png": ("truncated", "cut off"),
    "truncated_webp": ("truncated", "cut off"),
    "zero_width_gif": ("corrupt", "damaged"),
    "png_bad_crc": ("corrupt", "damaged"),
    "garbage_jpg": ("not_image", "not an image"),
    "svg": ("not_image", "SVG"),
    "pdf": ("not_image", "PDF"),
    "html": ("not_image", "web page"),
    "text": ("not_image", "text file"),
    "elf_as_png": ("not_image", "Linux program"),
    "pe_as_png": ("not_image", "Windows program"),
    "zip": ("not_image", "ZIP"),
    "tiff": ("unsupported_format", "TIFF"),
    "ico": ("unsupported_format", "ICO"),
    "heic": ("unsupported_format", "HEIC"),
    "heic_mif1": ("unsupported_format", "HEIC"),
    "mp4": ("not_image", "a video"),
    "mov": ("not_image", "a video"),
    "avi": ("not_image", "a video"),
    "m4a": ("not_image", "an audio file"),
    "wav": ("not_image", "an audio file"),
    **{name: ("ok", "") for name in CAPTIONED},
}


@pytest.fixture(scope="module")
def corpus() -> list[CorpusItem]:
    items = build_corpus(MAX_BYTES)
    assert len(items) >= 25
    for item in items:
        assert EXPECTED[item.name][0] == item.expected, item.name  # the table matches the corpus
    return items


_opened: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only inside `opens()`


@contextlib.contextmanager
def recording_opens() -> Iterator[list[str]]:
    """Every path the process opens meanwhile, from any thread."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


async def caption(server: FakeDiscord, channel: int, world: World, item: CorpusItem) -> str:
    attachment = (item.filename, item.data, item.content_type)
    await server.post_message(channel, world.bob, "!caption", attachments=[attachment])
    return str((await server.wait_for_sent(channel_id=channel, timeout=30))["content"])


def files_named(root: Path, names: set[str]) -> list[Path]:
    return [path for path in root.rglob("*") if path.name in names or path.name == "etc"]


class RssSampler:
    """The highest resident size seen every few milliseconds, from a thread, over the start."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20

    def _sample(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


async def test_caption_replies_memory_and_disk(
    server: FakeDiscord,
    world: World,
    corpus: list[CorpusItem],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cwd = tmp_path / "cwd" / "deep"  # `../../etc/passwd.png` from here is tmp_path/etc/...
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    settings = bot_settings(server, tmp_path / "data", MAX_IMAGE_BYTES=str(MAX_BYTES))
    # Discord lets the bot answer 5 times per 5 s in one channel (rate-limits.mdx): the corpus's
    # commands come from several channels so that the test measures the bot, not the limit.
    channels = [server.add_channel(world.guild, f"corpus{i}") for i in range(8)]
    async with running(settings):
        before = peak_rss_mb()
        probe = tmp_path / "probe"
        with recording_opens() as opened, RssSampler() as sampled:
            await asyncio.to_thread(probe.write_bytes, b"")  # the recorder sees every thread
            for i, item in enumerate(corpus):
                reply = await caption(server, channels[i % len(channels)], world, item)
                expected, words = EXPECTED[item.name]
                if expected == "ok":
                    assert CAPTION.match(reply), (item.name, reply)
                else:
                    assert reply.startswith("I can't use that image:"), (item.name, reply)
                    assert words.lower() in reply.lower(), (item.name, reply)
        # ru_maxrss only moves past the process's earlier peak (other tests may have set it);
        # the sampler sees the corpus's own peak over the resident size when it started.
        growth = max(peak_rss_mb() - before, sampled.growth_mb)
        print(f"\npeak RSS grew {growth:.0f} MB over {len(corpus)} corpus files")
        assert growth < MAX_GROWTH_MB

        await server.post_message(
            world.general,
            world.alice,
            "!caption",
            attachments=[("next.png", shape_png("red", "square"), "image/png")],
        )
        assert (await server.wait_for_sent(channel_id=world.general))["content"] == "a red square"

    names = {Path(item.filename).name for item in corpus}
    assert files_named(tmp_path, names) == []
    assert str(probe) in opened
    assert [path for path in opened if Path(path).name in names] == []


async def test_uploads_refused_with_a_log_line_and_the_rest_indexed(
    server: FakeDiscord,
    world: World,
    corpus: list[CorpusItem],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.index.background")
    settings = bot_settings(server, tmp_path / "data", MAX_IMAGE_BYTES=str(MAX_BYTES))
    async with running(settings) as bot:
        posted = {}
        for item in corpus:
            message = await server.post_message(
                world.other,
                world.carol,
                "",
                attachments=[(item.filename, item.data, item.content_type)],
            )
            posted[item.name] = (int(message["id"]), int(message["attachments"][0]["id"]))
        ok = [item for item in corpus if item.expected == "ok"]
        await indexed(bot, len(ok), timeout=30)
        for item in corpus:
            message_id, attachment_id = posted[item.name]
            in_index = await is_indexed(bot, message_id, attachment_id)
            assert in_index == (item.expected == "ok"), item.name
            logged = [
                r.getMessage()
                for r in caplog.records
                if r.name == "bot.index.background"
                and r.getMessage().startswith(f"not indexing image {attachment_id} of message")
            ]
            looks_like_image = (item.content_type or "").startswith("image/") or (
                Path(item.filename).suffix.lower() in IMAGE_EXTENSIONS
            )
            if item.expected == "ok" or not looks_like_image:
                assert logged == [], item.name  # a PDF or ZIP upload is never even fetched
            else:
                assert len(logged) == 1, (item.name, logged)
                assert EXPECTED[item.name][1].lower() in logged[0].lower(), logged[0]
        assert await bot.index.count() == len(ok)
        assert await bot.index.pending_count() == 0
