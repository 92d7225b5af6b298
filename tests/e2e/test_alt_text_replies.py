"""Issue 17: automatic alt text, opt-in per channel, through the real client."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from bot import wording
from bot.chat.client import Glimpse
from tests.e2e.harness import (
    World,
    at_least,
    bot_settings,
    eventually,
    held,
    mentions_disabled,
    replies_to,
    reply_to,
    running,
    shape_png,
)
from tests.e2e.test_real_discord import command, image, settled
from tests.fakediscord import FakeDiscord, Upload
from tests.fakediscord.payloads import SUPPRESS_NOTIFICATIONS


async def turn_on(server: FakeDiscord, world: World, channel: int) -> None:
    reply = await command(server, channel, world.alice, "!alttext on")
    assert reply["content"] == wording.alt_text_on(f"<#{channel}>", already=False)


async def _not(value: bool) -> bool:
    return not value


async def test_moderators_turn_it_on_and_off_per_channel(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    here = f"<#{world.general}>"
    reply = await command(server, world.general, world.bob, "!alttext on")
    assert reply["content"] == wording.permission_needed(["manage_messages"])
    reply = await command(server, world.general, world.bob, "!alttext")
    assert reply["content"] == wording.alt_text_state(here, on=False)
    await turn_on(server, world, world.general)
    reply = await command(server, world.general, world.alice, "!alttext ON")
    assert reply["content"] == wording.alt_text_on(here, already=True)
    reply = await command(server, world.general, world.bob, "!alttext")
    assert reply["content"] == wording.alt_text_state(here, on=True)
    reply = await command(server, world.general, world.alice, "!alttext maybe")
    assert reply["content"] == wording.ALT_TEXT_USAGE
    dm = server.dm_channel(world.alice)
    reply = await command(server, dm, world.alice, "!alttext on")
    assert reply["content"] == wording.SERVERS_ONLY
    assert glimpse.index.describes_images(world.general)
    assert not glimpse.index.describes_images(world.other)
    assert not glimpse.index.checks_reposts(world.general)  # a setting of its own
    reply = await command(server, world.general, world.alice, "!alttext off")
    assert reply["content"] == wording.alt_text_off(here, was_on=True)
    reply = await command(server, world.general, world.alice, "!alttext off")
    assert reply["content"] == wording.alt_text_off(here, was_on=False)
    assert not glimpse.index.describes_images(world.general)


async def test_a_thread_follows_its_channel(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    thread = server.add_thread(world.general, "thread")
    reply = await command(server, thread, world.alice, "!alttext on")
    assert reply["content"] == wording.alt_text_on(f"<#{world.general}>", already=False)
    assert glimpse.index.describes_images(world.general)


async def test_the_setting_survives_a_restart(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings):
        await turn_on(server, world, world.general)
    async with running(settings) as bot:
        assert bot.index.describes_images(world.general)
        reply = await command(server, world.general, world.bob, "!alttext")
        assert reply["content"] == wording.alt_text_state(f"<#{world.general}>", on=True)


async def test_the_setting_goes_with_its_channel(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    memes = server.add_channel(world.guild, "memes")
    await server.flush()
    await turn_on(server, world, memes)
    await server.delete_channel(memes)
    await eventually(lambda: _not(glimpse.index.describes_images(memes)))
    conn = sqlite3.connect(glimpse.settings.data_dir / "index.sqlite3")
    try:
        assert conn.execute("SELECT COUNT(*) FROM alt_text_channels").fetchone() == (0,)
    finally:
        conn.close()


async def described_by(server: FakeDiscord, message: dict) -> dict:
    """The bot's automatic description of `message`: a reply that pings and notifies no one."""
    reply = await reply_to(server, message)
    assert mentions_disabled(reply) and reply["flags"] & SUPPRESS_NOTIFICATIONS
    assert all(line.startswith("Automatic alt text: ") for line in reply["content"].split("\n"))
    return reply


async def description_of(server: FakeDiscord, message: dict) -> str:
    return str((await described_by(server, message))["content"])


async def test_images_without_alt_text_get_one_numbered_reply(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await turn_on(server, world, world.general)
    one = await server.post_message(world.general, world.bob, "", attachments=[
        image("a.png", "red", "circle")])  # fmt: skip
    assert await description_of(server, one) == wording.automatic_alt_text("a red circle")
    three = await server.post_message(world.general, world.bob, "", attachments=[
        image("b.png", "blue", "square"),
        Upload("c.png", shape_png("green", "circle"), "image/png", description="my circle"),
        Upload("d.png", shape_png("red", "square"), "image/png", spoiler=True),
    ])  # fmt: skip
    assert await description_of(server, three) == (
        "Automatic alt text: a blue square (image 1)\n"
        "Automatic alt text: ||a red square|| (image 2)"
    )
    ball = Upload("e.png", shape_png("red", "circle"), "image/png", description="a ball")
    told = await server.post_message(world.general, world.bob, "", attachments=[ball])
    elsewhere = await server.post_message(world.other, world.bob, "", attachments=[
        image("f.png", "red", "circle")])  # fmt: skip
    source = await server.post_message(world.other, world.bob, "", attachments=[
        image("g.png", "blue", "circle")])  # fmt: skip
    forward = await server.forward_message(world.general, world.carol, world.other,
                                           int(source["id"]))  # fmt: skip
    assert await description_of(server, forward) == wording.automatic_alt_text("a blue circle")
    captioned = await command(server, world.general, world.alice, "!caption",
                              attachments=[image("h.png", "green", "square")])  # fmt: skip
    assert captioned["content"] == "a green square"
    await settled(server, glimpse, 6)
    await asyncio.sleep(0.5)
    assert replies_to(server, told) == replies_to(server, elsewhere) == []
    assert [len(replies_to(server, m)) for m in (one, three, forward)] == [1, 1, 1]
    asked = {"id": captioned["message_reference"]["message_id"]}
    assert len(replies_to(server, asked)) == 1  # the command's answer, no description


async def test_link_previews_are_not_described(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    url = "https://example.com/meme.png"
    server.host_on_web(url, shape_png("green", "circle", seed=8))
    await turn_on(server, world, world.general)
    message = await server.post_message(world.general, world.bob, f"look {url}")
    await server.previews_settled()
    await settled(server, glimpse, 1)
    await asyncio.sleep(0.5)
    assert replies_to(server, message) == []


async def test_more_than_max_pending_waiting_skips_new_ones_with_one_log_line_each(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.chat.descriptions")
    async with running(bot_settings(server, tmp_path / "data", ALT_TEXT_MAX_PENDING="2")) as bot:
        await turn_on(server, world, world.general)
        release = held(monkeypatch, bot.vision, "caption")
        posted = []
        for n, (colour, shape) in enumerate(
            [("red", "circle"), ("blue", "square"), ("green", "circle"), ("red", "square"),
             ("blue", "circle")]
        ):  # fmt: skip
            posted.append(await server.post_message(world.general, world.bob, "", attachments=[
                image(f"{n}.png", colour, shape)]))  # fmt: skip
            await eventually(lambda n=n: at_least(bot.descriptions.waiting, min(n + 1, 3)))

        # 2 waiting is not more than 2: the third is taken; 3 waiting is: the rest are skipped.
        def skipped() -> list[str]:
            return [r.getMessage() for r in caplog.records if "alt text skipped" in r.msg]

        await eventually(lambda: at_least(len(skipped()), 2))
        await asyncio.sleep(0.2)
        assert bot.descriptions.waiting == 3
        assert skipped() == [
            f"alt text skipped for message {m['id']}: 3 descriptions are waiting"
            for m in posted[3:]
        ]
        release.set()
        for message in posted[:3]:
            await described_by(server, message)
        await eventually(lambda: at_least(-bot.descriptions.waiting, 0))
        await asyncio.sleep(0.3)
        assert [len(replies_to(server, m)) for m in posted] == [1, 1, 1, 0, 0]


async def test_turned_off_it_posts_none_of_the_descriptions_on_their_way(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moderator who turns it off during a burst sees no more descriptions there."""
    await turn_on(server, world, world.general)
    release = held(monkeypatch, glimpse.vision, "caption")
    posted = [
        await server.post_message(
            world.general, world.bob, "", attachments=[image(f"{n}.png", "red", "circle", seed=n)]
        )
        for n in range(3)
    ]
    await eventually(lambda: at_least(glimpse.descriptions.waiting, 3))
    reply = await command(server, world.general, world.alice, "!alttext off")
    assert reply["content"] == wording.alt_text_off(f"<#{world.general}>", was_on=True)
    release.set()
    await eventually(lambda: at_least(-glimpse.descriptions.waiting, 0))
    await asyncio.sleep(0.3)
    assert [len(replies_to(server, m)) for m in posted] == [0, 0, 0]
