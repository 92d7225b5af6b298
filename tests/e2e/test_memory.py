"""Bounded memory: huge uploads in any format are reduced at once and decoded in turn."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import psutil
from PIL import Image

from tests.e2e.harness import World, bot_settings, indexed, is_indexed, running
from tests.fakediscord import FakeDiscord

SIDE = 7000  # 49 megapixels: within MAX_IMAGE_PIXELS, 147 MB of RGB once decoded
LIMIT_MB = 400


def huge_png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), colour).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def huge_gif(frames: int = 100, side: int = 4000) -> bytes:
    """100 frames of 4000 x 4000; after the first, each differs by a small patch, so the file
    stays small (Pillow stores only what changed) while every frame is full size."""
    first = Image.new("P", (side, side), 1)
    first.putpalette([240, 240, 240, 220, 30, 30] + [0] * 762)

    def later() -> object:
        for n in range(1, frames):
            frame = first.copy()
            frame.paste(n % 2, (n * 10, n * 10, n * 10 + 20, n * 10 + 20))
            yield frame

    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=later(), duration=40, loop=0)
    return buffer.getvalue()


class PeakRss:
    """Samples this process's resident memory (the bot runs in it) every 20 ms."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


async def test_ten_huge_pngs_and_a_huge_animated_gif_stay_within_the_memory_bound(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    pngs = [(f"big{i}.png", huge_png((25 * i, 255 - 20 * i, 120)), "image/png") for i in range(10)]
    gif = ("anim.gif", huge_gif(), "image/gif")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await bot.vision.captioner()
        await bot.vision.embedder()
        with PeakRss() as rss:
            first = await server.post_message(world.general, world.alice, "", attachments=pngs)
            second = await server.post_message(world.general, world.bob, "", attachments=[gif])
            await indexed(bot, 11, timeout=120)
            await server.post_message(
                world.general, world.carol, "!caption", reply_to=int(first["id"])
            )
            reply = await server.wait_for_sent(channel_id=world.general, timeout=60)
        print(f"\npeak RSS growth {rss.growth_mb:.0f} MB (limit {LIMIT_MB} MB)")
        assert rss.growth_mb < LIMIT_MB
        lines = reply["content"].splitlines()
        assert [line[:3] for line in lines[:4]] == ["1. ", "2. ", "3. ", "4. "], lines
        assert "skipped" in lines[-1]  # ten images: four captioned, the rest named as skipped
        for message in (first, second):
            for attachment in message["attachments"]:
                assert await is_indexed(bot, int(message["id"]), int(attachment["id"]))
        await server.post_message(world.general, world.alice, "!find a red circle")
        found = await server.wait_for_sent(channel_id=world.general, timeout=30)
        assert found["embeds"], found  # and the next command works
