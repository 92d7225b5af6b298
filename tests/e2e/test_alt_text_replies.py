"""Issue 17: automatic alt text, opt-in per channel, through the real client."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot import wording
from bot.chat.client import Glimpse
from tests.e2e.harness import World, bot_settings, eventually, running
from tests.e2e.test_real_discord import command
from tests.fakediscord import FakeDiscord


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
