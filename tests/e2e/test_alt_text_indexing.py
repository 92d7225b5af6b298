"""Issue 17, point 5: every described image is also indexed, from the same single download and
decode, even when the indexer is busy with a backlog; an opted-out poster's image or one in an
ignored channel is described and not indexed (and still downloaded once)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.chat.client import Glimpse
from tests.e2e.harness import World, bot_settings, held, indexed, is_indexed, running
from tests.e2e.test_alt_text_replies import described_by, turn_on
from tests.e2e.test_real_discord import command, image, settled
from tests.fakediscord import FakeDiscord
from tests.shapes import CLASSES


def downloads(server: FakeDiscord, message: dict) -> list[int]:
    """How many times each attachment of the message was downloaded (from any media host)."""
    return [
        sum(1 for _, path, _ in server.media_requests if f"/{attachment['id']}/" in path)
        for attachment in message["attachments"]
    ]


async def test_a_described_image_is_indexed_from_its_one_download(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await turn_on(server, world, world.general)
    posted = await server.post_message(world.general, world.bob, "", attachments=[
        image("a.png", "red", "circle"), image("b.png", "blue", "square")])  # fmt: skip
    await described_by(server, posted)
    await settled(server, glimpse, 2)
    for attachment in posted["attachments"]:
        assert await is_indexed(glimpse, int(posted["id"]), int(attachment["id"]))
    assert downloads(server, posted) == [1, 1]


async def test_also_while_the_indexer_works_through_a_backlog(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty uploads wait for the indexer, more than the fetcher keeps: the described image
    must not wait behind them for a second download."""
    await turn_on(server, world, world.general)
    release = held(monkeypatch, glimpse.indexer, "_process")
    backlog = []
    for n in range(40):
        upload = image(f"{n}.png", *CLASSES[n % len(CLASSES)], seed=n)
        backlog.append(
            await server.post_message(world.other, world.carol, "", attachments=[upload])
        )
    posted = await server.post_message(world.general, world.bob, "", attachments=[
        image("late.png", "yellow", "triangle")])  # fmt: skip
    await described_by(server, posted)
    release.set()
    await indexed(glimpse, 41, timeout=60)
    assert await is_indexed(glimpse, int(posted["id"]), int(posted["attachments"][0]["id"]))
    assert downloads(server, posted) == [1]
    assert [downloads(server, m) for m in backlog] == [[1]] * 40


async def test_opted_out_or_ignored_images_are_described_not_indexed(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    ignored = server.add_channel(world.guild, "ignored")
    settings = bot_settings(server, tmp_path / "data", IGNORE_CHANNELS=str(ignored))
    async with running(settings) as bot:
        await turn_on(server, world, world.general)
        await turn_on(server, world, ignored)
        await command(server, world.general, world.carol, "!optout")
        mine = await server.post_message(world.general, world.carol, "", attachments=[
            image("c.png", "green", "circle")])  # fmt: skip
        there = await server.post_message(ignored, world.bob, "", attachments=[
            image("d.png", "blue", "circle")])  # fmt: skip
        assert (await described_by(server, mine))["content"].endswith("a green circle")
        assert (await described_by(server, there))["content"].endswith("a blue circle")
        await settled(server, bot, 0)
        assert await bot.index.count() == 0
        assert downloads(server, mine) == downloads(server, there) == [1]


async def test_a_busy_channel_leaves_room_for_the_others(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst in one channel fills ALT_TEXT_MAX_PENDING; a channel with none waiting still
    gets its image described."""
    settings = bot_settings(server, tmp_path / "data", ALT_TEXT_MAX_PENDING="8")
    async with running(settings) as bot:
        await turn_on(server, world, world.general)
        await turn_on(server, world, world.other)
        release = held(monkeypatch, bot.descriptions, "_describe")
        for n in range(10):
            await server.post_message(world.general, world.carol, "", attachments=[
                image(f"{n}.png", *CLASSES[n % len(CLASSES)], seed=n)])  # fmt: skip
        quiet = await server.post_message(world.other, world.bob, "", attachments=[
            image("q.png", "yellow", "triangle")])  # fmt: skip
        await server.flush()
        await asyncio.sleep(0.3)
        assert bot.descriptions.waiting == 9 + 1  # more than 8 of general's, and other's
        release.set()
        assert (await described_by(server, quiet))["content"].endswith("a yellow triangle")


async def test_a_burst_holds_the_pictures_of_two_messages_at_a_time(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four posts of three images each: the others wait their turn before anything of theirs
    is downloaded or decoded (a burst of ten-image posts would otherwise hold hundreds of
    decoded pictures at once), and each still gets its description."""
    await turn_on(server, world, world.general)
    await turn_on(server, world, world.other)  # (two channels: no pacing between the replies)
    real, go = glimpse.descriptions._fetch, asyncio.Event()
    fetching = most = 0

    async def counted(source: object) -> object:
        nonlocal fetching, most
        fetching += 1
        most = max(most, fetching)
        try:
            await go.wait()
            return await real(source)  # type: ignore[arg-type]
        finally:
            fetching -= 1

    monkeypatch.setattr(glimpse.descriptions, "_fetch", counted)
    posts = []
    for n in range(4):
        files = [image(f"{n}-{k}.png", *CLASSES[(n + k) % len(CLASSES)], seed=n) for k in range(3)]
        channel = (world.general, world.other)[n % 2]
        posts.append(await server.post_message(channel, world.carol, "", attachments=files))
    await server.flush()
    await asyncio.sleep(0.3)
    assert glimpse.descriptions.waiting == 4 and fetching == 2 * 3
    go.set()
    for posted in posts:
        await described_by(server, posted)
    assert most == 2 * 3
