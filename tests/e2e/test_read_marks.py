"""Read marks: the newest message the bot saw in each channel, images or not, is where a
catch-up stops reading, so a channel with nothing indexed yet loses no upload to downtime, and
a mark is never written above a stretch that a catch-up has yet to read."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.chat import history
from bot.chat.client import Glimpse
from tests.e2e.harness import World, bot_settings, eventually, indexed, running
from tests.e2e.test_catch_up import attachment_indexed, new_session_missing, upload
from tests.fakediscord import FakeDiscord


async def talk(server: FakeDiscord, bot: Glimpse, channel: int, user: int, text: str) -> dict:
    """A message without images, handled by the bot."""
    message = await server.post_message(channel, user, text)

    async def handled() -> bool:
        return any(m.id == int(message["id"]) for m in bot.cached_messages)

    await eventually(handled)
    await asyncio.sleep(0.1)  # its on_message listeners ran
    return message


def held_catch_ups(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Catch-ups wait for the event returned (set: they run at once)."""
    real, go = history.catch_up, asyncio.Event()
    go.set()

    async def waiting(*args: Any) -> int:
        await go.wait()
        return await real(*args)

    monkeypatch.setattr(history, "catch_up", waiting)
    return go


async def test_an_upload_missed_where_nothing_was_indexed_yet_is_indexed(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await talk(server, bot, world.general, world.alice, "hello")
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "first.png", "red")
        )
        await attachment_indexed(bot, missed)
        await indexed(bot, 1)


async def test_an_upload_posted_while_the_bot_was_stopped_is_indexed_at_start(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """The mark outlives the process: it is written when the bot closes."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        await talk(server, bot, world.general, world.alice, "hello")
    missed = await upload(server, world, "while-down.png", "green")
    async with running(settings) as bot:
        await attachment_indexed(bot, missed)


async def test_marks_are_written_while_the_bot_runs(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only at close: a process killed keeps the marks written up to a minute before."""
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "WRITE_EVERY_S", 0.0)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        first = await talk(server, bot, world.other, world.bob, "one")
        second = await talk(server, bot, world.other, world.bob, "two")

        async def marked() -> bool:
            return await bot.index.last_message_id(world.other) == int(second["id"])

        await eventually(marked)
        assert int(first["id"]) < int(second["id"])


async def test_no_mark_is_written_above_what_a_catch_up_has_yet_to_read(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message seen live after a new session began lies above the uploads that session
    missed: the bot closing before its catch-up read them keeps the older mark, so the next
    start still finds them."""
    go = held_catch_ups(monkeypatch)
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        await talk(server, bot, world.general, world.alice, "before")
        go.clear()
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "blue")
        )
        later = await talk(server, bot, world.general, world.alice, "after")
        assert await bot.index.last_message_id(world.general) < int(missed["id"])
    go.set()
    async with running(settings) as bot:
        await attachment_indexed(bot, missed)
        await eventually(lambda: _marked_at_least(bot, world.general, int(later["id"])))


async def _marked_at_least(bot: Glimpse, channel: int, message_id: int) -> bool:
    return (await bot.index.last_message_id(channel) or 0) >= message_id


async def test_no_mark_is_written_between_a_new_session_and_its_catch_up(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events of a new session can come before its on_ready asks for the catch-up (while the
    guilds stream in): a message seen then is not written as a mark either."""
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "WRITE_EVERY_S", 0.0)
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        before = await talk(server, bot, world.general, world.alice, "before")
        await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
        never = asyncio.Event()

        async def held_on_ready() -> None:
            await never.wait()  # this session's catch-up is not asked for before the close

        monkeypatch.setattr(bot, "on_ready", held_on_ready)
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "blue")
        )
        await talk(server, bot, world.general, world.alice, "after")
        assert await bot.index.last_message_id(world.general) == int(before["id"])
    async with running(settings) as bot:
        await attachment_indexed(bot, missed)
