"""Read marks: the newest message the bot saw in each channel, images or not, is where a
catch-up stops reading, so a channel with nothing indexed yet loses no upload to downtime, and
a mark is never written above a stretch that a catch-up has yet to read."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.chat import history
from bot.chat.client import Glimpse
from tests.e2e.harness import (
    World,
    bot_settings,
    eventually,
    indexed,
    is_indexed,
    running,
    shape_png,
)
from tests.e2e.test_catch_up import (
    attachment_indexed,
    held_catch_ups,
    new_session_missing,
    second_catch_up_fails,
    upload,
)
from tests.fakediscord import FakeDiscord


async def talk(server: FakeDiscord, bot: Glimpse, channel: int, user: int, text: str) -> dict:
    """A message without images, handled by the bot."""
    message = await server.post_message(channel, user, text)

    async def handled() -> bool:
        return any(m.id == int(message["id"]) for m in bot.cached_messages)

    await eventually(handled)
    await asyncio.sleep(0.1)  # its on_message listeners ran
    return message


def write_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "WRITE_EVERY_S", 0.0)


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
    write_every_time(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        first = await talk(server, bot, world.other, world.bob, "one")
        second = await talk(server, bot, world.other, world.bob, "two")

        async def marked() -> bool:
            return await bot.index.last_message_id(world.other) == int(second["id"])

        await eventually(marked)
        assert int(first["id"]) < int(second["id"])


async def test_a_channels_first_mark_is_written_at_once(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """Not a minute later: a process killed before would not know the channel at all."""
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        first = await talk(server, bot, world.other, world.bob, "one")
        await eventually(lambda: _marked_at_least(bot, world.other, int(first["id"])), timeout=5)
        second = await talk(server, bot, world.other, world.bob, "two")
        await asyncio.sleep(0.3)
        assert await bot.index.last_message_id(world.other) < int(second["id"])  # in a minute


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
    write_every_time(monkeypatch)
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


async def test_a_catch_up_that_fails_writes_no_mark_and_runs_again(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discord unreachable while it reads, say: what it missed stays unread, so a message seen
    meanwhile is not written as a mark above it, and it tries again a little later."""
    write_every_time(monkeypatch)
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "RETRY_S", 0.5)
    calls = second_catch_up_fails(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        before = await talk(server, bot, world.general, world.alice, "before")
        await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "blue")
        )
        after = await talk(server, bot, world.general, world.alice, "after")
        assert calls() == 2 and await bot.index.last_message_id(world.general) == int(before["id"])
        await attachment_indexed(bot, missed)
        assert calls() == 3
        await eventually(lambda: _marked_at_least(bot, world.general, int(after["id"])))


async def a_gap_read_once_refused(
    server: FakeDiscord, bot: Glimpse, world: World, status: int, count: int = 1
) -> tuple[dict, dict]:
    """#general read and marked; then a new session misses an upload there, and Discord
    answers `status` (`count` times) to the catch-up's read of it. Returns (marked, missed)."""
    before = await talk(server, bot, world.general, world.alice, "before")
    await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
    server.fail_next("GET", rf"^/channels/{world.general}/messages$", status, count=count)
    missed = await new_session_missing(
        server, bot, lambda: upload(server, world, "missed.png", "blue")
    )
    return before, missed


@pytest.mark.parametrize(("status", "count"), [(503, 1), (429, 5)])
async def test_a_channel_discord_failed_on_for_now_is_read_again_a_little_later(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    count: int,
) -> None:
    """A 503 (which discord.py does not retry), or 429s until discord.py gives up, on one
    channel's history: the others are read, and the catch-up runs again, rather than waiting
    for the next session, days away."""
    write_every_time(monkeypatch)
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "RETRY_S", 0.5)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        _, missed = await a_gap_read_once_refused(server, bot, world, status, count)
        await attachment_indexed(bot, missed)
        assert [served for _, _, served in server.faults_served] == [status] * count


async def test_a_channel_a_catch_up_could_not_read_keeps_its_marks_held(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_every_time(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        before, missed = await a_gap_read_once_refused(server, bot, world, 404)
        await eventually(lambda: _true(bool(server.faults_served)))
        await talk(server, bot, world.general, world.alice, "after")
        await talk(server, bot, world.other, world.alice, "elsewhere")  # a write happens
        await eventually(lambda: _marked_at_least(bot, world.other, 1))
        assert await bot.index.last_message_id(world.general) == int(before["id"])
        await new_session_missing(server, bot, lambda: upload(server, world, "b.png", "red"))
        await attachment_indexed(bot, missed)


async def test_a_channel_first_seen_during_a_catch_up_is_read_from_there(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its mark is held (a catch-up runs), not yet written, when the next session misses an
    upload there: the catch-up reads it all the same, down to the first message the bot saw
    there, and not the images from before the bot saw the channel (`!index` reads those),
    even after another channel was deleted meanwhile."""
    history_image = await upload_in(server, world, world.other, "history.png", "green")
    spare = server.add_channel(world.guild, "spare")
    go = held_catch_ups(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await talk(server, bot, world.general, world.alice, "before")
        go.clear()
        await new_session_missing(server, bot, lambda: server.post_message(
            world.general, world.alice, "a new session"))  # fmt: skip
        await talk(server, bot, world.other, world.alice, "first seen here")
        await talk(server, bot, spare, world.alice, "soon gone")
        await server.delete_channel(spare)
        await eventually(lambda: _true(bot.get_channel(spare) is None))
        await asyncio.sleep(0.1)
        assert await bot.index.last_message_id(world.other) is None
        missed = await new_session_missing(
            server, bot, lambda: upload_in(server, world, world.other, "missed.png", "blue")
        )
        go.set()
        await attachment_indexed(bot, missed)
        await indexed(bot, 1)
        await eventually(lambda: _marked_at_least(bot, world.other, int(missed["id"])))
        assert await bot.index.count() == 1
        attachment = int(history_image["attachments"][0]["id"])
        assert not await is_indexed(bot, int(history_image["id"]), attachment)


async def test_no_mark_is_written_once_closing(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that arrives while the bot closes, after its catch-up was cancelled, is not
    written as a mark above what that catch-up had yet to read."""
    write_every_time(monkeypatch)
    go = held_catch_ups(monkeypatch)
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        before = await talk(server, bot, world.general, world.alice, "before")
        await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
        go.clear()
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "blue")
        )
        await bot.catch_ups.close()  # the first step of the bot's close
        await talk(server, bot, world.general, world.alice, "while closing")
        assert await bot.index.last_message_id(world.general) == int(before["id"])
    go.set()
    async with running(settings) as bot:
        await attachment_indexed(bot, missed)


async def test_a_deleted_channel_leaves_no_mark_behind(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its held mark is dropped with it, not written back when the bot closes."""
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "WRITE_EVERY_S", 3600.0)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        first = await talk(server, bot, world.other, world.alice, "one")
        await eventually(lambda: _marked_at_least(bot, world.other, int(first["id"])))
        await talk(server, bot, world.other, world.alice, "two")  # held
        await server.delete_channel(world.other)
        await eventually(lambda: _true(bot.get_channel(world.other) is None))
        await asyncio.sleep(0.1)
        assert await bot.index.channels() == []
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        assert await bot.index.channels() == []


async def test_leaving_a_server_keeps_the_other_servers_marks(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "WRITE_EVERY_S", 3600.0)
    second = server.add_guild("Second")
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        first = await talk(server, bot, world.general, world.alice, "one")
        await eventually(lambda: _marked_at_least(bot, world.general, int(first["id"])))
        last = await talk(server, bot, world.general, world.alice, "two")  # held
        await server.remove_bot_from_guild(second)
        await eventually(lambda: _true(bot.get_guild(second) is None))
        await asyncio.sleep(0.1)
    async with running(settings) as bot:  # the close wrote the held mark
        assert await bot.index.last_message_id(world.general) == int(last["id"])


async def upload_in(
    server: FakeDiscord, world: World, channel: int, name: str, colour: str
) -> dict:
    png = shape_png(colour, "square", seed=len(name))
    return await server.post_message(channel, world.bob, "", attachments=[(name, png, "image/png")])


async def _true(value: bool) -> bool:
    return value


async def test_no_mark_passes_uploads_waiting_in_memory_for_the_database(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses to queue an upload (locked, say): the indexer holds it in memory
    and retries; until then no mark is written above it, or a restart would lose it."""
    write_every_time(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        before = await talk(server, bot, world.general, world.alice, "before")
        await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
        real, refusing = bot.index.add_pending, True

        async def locked(*args: Any) -> Any:
            if refusing:
                raise sqlite3.OperationalError("database is locked")
            return await real(*args)

        monkeypatch.setattr(bot.index, "add_pending", locked)
        held = await upload(server, world, "held.png", "blue")
        await eventually(lambda: _true(bot.indexer.holding))
        after = await talk(server, bot, world.general, world.alice, "after")
        assert await bot.index.last_message_id(world.general) == int(before["id"])
        refusing = False
        await attachment_indexed(bot, held)
        later = await talk(server, bot, world.general, world.alice, "later")
        await eventually(lambda: _marked_at_least(bot, world.general, int(later["id"])))
        assert int(after["id"]) < int(later["id"])


async def test_no_mark_passes_an_upload_still_on_its_way_to_the_database(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow queueing (SQLite waiting on a lock): a message seen meanwhile in the same channel
    is not written as a mark until the upload before it is queued."""
    write_every_time(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        before = await talk(server, bot, world.general, world.alice, "before")
        await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
        real, go = bot.index.add_pending, asyncio.Event()

        async def slow(*args: Any) -> Any:
            await go.wait()
            return await real(*args)

        monkeypatch.setattr(bot.index, "add_pending", slow)
        slowed = await upload(server, world, "slow.png", "blue")
        after = await talk(server, bot, world.general, world.alice, "after")
        assert await bot.index.last_message_id(world.general) == int(before["id"])
        go.set()
        await attachment_indexed(bot, slowed)
        await talk(server, bot, world.other, world.alice, "a write happens")
        await eventually(lambda: _marked_at_least(bot, world.general, int(after["id"])))


@pytest.mark.parametrize("failure", ["unreachable", "503"])
async def test_an_upload_seen_live_before_the_retry_does_not_hide_what_was_missed(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    """A catch-up that Discord failed on (wholly, or for one channel) runs again later. An
    image posted live meanwhile lies above the one missed, and the retry still reads down to
    the missed one, not down to it."""
    write_every_time(monkeypatch)
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "RETRY_S", 3.0)
    if failure == "unreachable":
        calls = second_catch_up_fails(monkeypatch)
    else:
        calls = counted_catch_ups(monkeypatch)
        server.fail_next("GET", rf"^/channels/{world.general}/messages$", 503)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        before = await talk(server, bot, world.general, world.alice, "before")
        await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "blue")
        )
        live = await upload(server, world, "live.png", "red")
        await attachment_indexed(bot, live)
        assert calls() == 2  # the retry comes after the live upload is known
        await attachment_indexed(bot, missed)
        assert calls() == 3


@pytest.mark.parametrize("failure", ["unreachable", "503"])
async def test_a_stretch_left_unread_is_read_after_a_restart(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    """The bot stopped before retrying a catch-up that Discord failed on: the image posted
    live since lies above the one missed, and the next start still reads down to that one."""
    write_every_time(monkeypatch)
    if failure == "unreachable":
        second_catch_up_fails(monkeypatch)
    else:
        server.fail_next("GET", rf"^/channels/{world.general}/messages$", 503)
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        before = await talk(server, bot, world.general, world.alice, "before")
        await eventually(lambda: _marked_at_least(bot, world.general, int(before["id"])))
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "blue")
        )
        live = await upload(server, world, "live.png", "red")
        await attachment_indexed(bot, live)
        assert not await is_indexed(bot, int(missed["id"]), int(missed["attachments"][0]["id"]))
    async with running(settings) as bot:
        await attachment_indexed(bot, missed)


def counted_catch_ups(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Returns how many catch-ups were asked for so far."""
    real, calls = history.catch_up, 0

    async def counted(*args: Any) -> int:
        nonlocal calls
        calls += 1
        return await real(*args)

    monkeypatch.setattr(history, "catch_up", counted)
    return lambda: calls
