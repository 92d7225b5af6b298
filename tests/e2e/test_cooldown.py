"""COOLDOWN through the real client: a command that ran spends from the member's budget, unless
the bot itself failed it (its queue full, say), which leaves the member nothing to show for it."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from bot import wording
from bot.chat.cooldowns import spends
from tests.e2e.harness import World, bot_settings, eventually, held, running, shape_png
from tests.fakediscord import FakeDiscord

PNG = "image/png"


async def test_a_command_the_bot_was_too_busy_for_is_not_counted(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = bot_settings(server, tmp_path / "data", COOLDOWN="1/60", MAX_PENDING="1")
    one = [("g.png", shape_png("green", "circle"), PNG)]
    async with running(settings) as bot:
        scheduler = bot.vision.scheduler
        release = held(monkeypatch, scheduler, "_loop")  # Bob's caption fills the queue

        async def queued() -> bool:
            return scheduler.waiting == 1

        await server.post_message(world.general, world.bob, "!caption", attachments=one)
        await eventually(queued)
        two = [(f"{c}.png", shape_png(c, "square"), PNG) for c in ("red", "blue")]
        await server.post_message(world.general, world.alice, "!caption", attachments=two)
        busy = await server.wait_for_sent(channel_id=world.general)
        assert busy["content"] == wording.BUSY  # both refused: one line, not two numbered
        release.set()
        assert (await server.wait_for_sent(channel_id=world.general))["content"] == "a green circle"
        await server.post_message(world.general, world.alice, "!caption", attachments=one)
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["content"] == "a green circle"
        await server.post_message(world.general, world.alice, "!caption", attachments=one)
        slow = await server.wait_for_sent(channel_id=world.general)
        assert slow["content"].startswith("Slow down a little")


async def test_a_members_own_mistake_is_counted(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data", COOLDOWN="1/60")
    async with running(settings):
        not_an_image = [("notes.txt", b"just words", "text/plain")]
        await server.post_message(world.general, world.alice, "!caption", attachments=not_an_image)
        refused = await server.wait_for_sent(channel_id=world.general)
        assert not refused["content"].startswith("Slow down")
        one = [("g.png", shape_png("green", "circle"), PNG)]
        await server.post_message(world.general, world.alice, "!caption", attachments=one)
        slow = await server.wait_for_sent(channel_id=world.general)
        assert slow["content"].startswith("Slow down a little")


async def test_caption_find_and_the_menu_spend_and_nothing_else_does(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """Only these are given back (a budget never grows past COOLDOWN's rate by the others)."""
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        spending = {command.name for command in bot.walk_commands() if spends(command)}
        assert spending == {"caption", "find"}
        menus = bot.tree.get_commands(type=discord.AppCommandType.message)
        assert [spends(menu) for menu in menus] == [True]
