"""Catching up after a new gateway session: a RESUME replays the events missed meanwhile, a new
session (after Discord invalidates the old one) does not, so the bot reads the channels' history
again, after every new session, one catch-up at a time."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
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
from tests.fakediscord import FakeDiscord
from tests.fakediscord.payloads import FORUM


async def upload(server: FakeDiscord, world: World, name: str, colour: str) -> dict:
    png = shape_png(colour, "square", seed=len(name))
    return await server.post_message(
        world.general, world.bob, "", attachments=[(name, png, "image/png")]
    )


async def new_session_missing(
    server: FakeDiscord, bot: Glimpse, post: Callable[[], Awaitable[dict]]
) -> dict:
    """Discord drops the bot's session; `post` happens while the bot has none, so no event
    brings it (the bot RESUMEs, is refused with op 9 and IDENTIFYs, held until then)."""
    posted = asyncio.Event()

    async def after_the_post(shard_id: int | None, *, initial: bool = False) -> None:
        await posted.wait()  # (and not discord.py's 5 s before a re-IDENTIFY)

    bot.before_identify_hook = after_the_post  # type: ignore[method-assign]
    identifies, resumes = server.identifies, server.resumes
    ready = asyncio.ensure_future(bot.wait_for("ready", timeout=15))
    await server.disconnect(resumable=False)
    message = await post()
    posted.set()
    await ready
    await asyncio.sleep(0.1)  # on_ready has run (it was scheduled just after `ready`)
    assert (server.identifies, server.resumes) == (identifies + 1, resumes)
    assert all(m.id != int(message["id"]) for m in bot.cached_messages)  # never dispatched
    return message


async def attachment_indexed(bot: Glimpse, message: dict) -> None:
    attachment = int(message["attachments"][0]["id"])
    await eventually(lambda: is_indexed(bot, int(message["id"]), attachment), timeout=15)


def second_catch_up_fails(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """The second catch-up raises (Discord unreachable while it reads, say); the others run.
    Returns how many were asked for so far."""
    real, calls = history.catch_up, 0

    async def fails_once(*args: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("connection reset")
        return await real(*args)

    monkeypatch.setattr(history, "catch_up", fails_once)
    return lambda: calls


def held_catch_ups(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Catch-ups wait for the event returned (set: they run at once)."""
    real, go = history.catch_up, asyncio.Event()
    go.set()

    async def waiting(*args: Any) -> int:
        await go.wait()
        return await real(*args)

    monkeypatch.setattr(history, "catch_up", waiting)
    return go


async def test_an_upload_missed_by_a_new_session_is_indexed(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        for colour in ("green", "blue"):  # the second new session too, not only the first
            missed = await new_session_missing(
                server, bot, lambda c=colour: upload(server, world, f"{c}.png", c)
            )
            await attachment_indexed(bot, missed)
        await indexed(bot, 3)


@pytest.mark.parametrize("catch_up_fails", [False, True], ids=["read", "retried"])
async def test_a_host_clock_behind_discords_misses_nothing(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    catch_up_fails: bool,
) -> None:
    """A message's ID holds Discord's time of it (reference.mdx, "Snowflakes"), not the
    host's: with the host's clock two minutes behind, what was posted in the minute before a
    new session must still be read; and when that session's catch-up fails (Discord
    unreachable while it reads), its retry a moment later reads up to the same point on
    Discord's clock, not the host's."""
    server.clock.advance(120)
    if catch_up_fails:
        monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "RETRY_S", 0.3)
        calls = second_catch_up_fails(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "green")
        )
        await attachment_indexed(bot, missed)
        await indexed(bot, 2)
        if catch_up_fails:
            assert calls() == 3


async def test_an_upload_before_on_ready_does_not_hide_what_the_session_missed(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """discord.py dispatches messages from READY on, in the seconds it waits for the servers
    before on_ready: one posted then is seen live, and must not count as where the catch-up
    (asked for at on_ready) stops, above what the session missed."""
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        real, on_ready = bot.catch_ups.start, asyncio.Event()
        asked: list[asyncio.Task[None]] = []

        def after_the_live_upload(guild_id: int | None = None) -> None:
            async def start() -> None:
                await on_ready.wait()
                real(guild_id)

            asked.append(asyncio.create_task(start()))

        monkeypatch.setattr(bot.catch_ups, "start", after_the_live_upload)
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "green")
        )
        live = await upload(server, world, "live.png", "blue")  # before on_ready, as it were
        await attachment_indexed(bot, live)
        on_ready.set()
        await attachment_indexed(bot, missed)
        await asyncio.gather(*asked)


async def test_threads_and_forum_posts_begun_while_the_bot_was_away_are_caught_up(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread begun in the gap has no read mark and no image yet: the catch-up finds it
    among the server's active threads (in a forum, every post is one), and reads it down to
    the newest message it knew of in that server, not only from the first seen there live."""
    gallery = server.add_channel(world.guild, "gallery", kind=FORUM)
    go = held_catch_ups(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        threads: list[int] = []
        missed: list[dict] = []

        async def begin_threads() -> dict:
            for parent, colour in ((world.general, "green"), (gallery, "blue")):
                threads.append(server.add_thread(parent, f"{colour} things"))
                missed.append(await server.post_message(threads[-1], world.bob, "", attachments=[
                    (f"{colour}.png", shape_png(colour, "circle"), "image/png")]))  # fmt: skip
            return missed[0]

        go.clear()
        await new_session_missing(server, bot, begin_threads)
        live = await server.post_message(threads[0], world.alice, "", attachments=[
            ("live.png", shape_png("yellow", "square"), "image/png")])  # fmt: skip
        await attachment_indexed(bot, live)
        go.set()
        for message in missed:
            await attachment_indexed(bot, message)


async def test_a_thread_written_in_then_archived_while_the_bot_was_away_is_caught_up(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """Only active threads come with their server; one archived in the gap is missing from
    discord.py's cache, and is asked for since it was written in lately."""
    thread = server.add_thread(world.general, "pics")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await server.post_message(thread, world.bob, "", attachments=[
            ("a.png", shape_png("red", "circle"), "image/png")])  # fmt: skip
        await indexed(bot, 1)

        async def post_then_archive() -> dict:
            posted = await server.post_message(thread, world.bob, "", attachments=[
                ("b.png", shape_png("green", "square"), "image/png")])  # fmt: skip
            await server.archive_thread(thread)
            return posted

        missed = await new_session_missing(server, bot, post_then_archive)
        assert bot.get_channel(thread) is None
        await attachment_indexed(bot, missed)


async def test_a_channel_deleted_while_the_bot_was_away_takes_its_images_along(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing from its server's channels (all of which come with the server; of threads, the
    active ones only: gateway-events.mdx, "Guild Create Extra Fields"), and quiet for longer
    than a thread stays unarchived (a week, here a second): it is asked for all the same, and
    the 404 removes what it held. A thread as quiet was archived before: not asked for."""
    monkeypatch.setattr(history, "ARCHIVE_MAX", timedelta(seconds=1))
    thread = server.add_thread(world.general, "pics")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        old = await server.post_message(world.other, world.bob, "", attachments=[
            ("old.png", shape_png("red", "circle"), "image/png")])  # fmt: skip
        threaded = await server.post_message(thread, world.bob, "", attachments=[
            ("t.png", shape_png("blue", "circle"), "image/png")])  # fmt: skip
        await attachment_indexed(bot, old)
        await attachment_indexed(bot, threaded)
        await server.archive_thread(thread)
        await asyncio.sleep(1.2)
        await attachment_indexed(bot, await upload(server, world, "week.png", "blue"))

        async def delete_other() -> dict:
            await server.delete_channel(world.other)
            return await upload(server, world, "meanwhile.png", "green")

        await attachment_indexed(bot, await new_session_missing(server, bot, delete_other))
        key = int(old["id"]), int(old["attachments"][0]["id"])
        await eventually(lambda: _not(is_indexed(bot, *key)))
        assert world.other not in {channel for _, channel in await bot.index.channels()}
        assert ("GET", f"/channels/{thread}") not in server.requests
        await attachment_indexed(bot, threaded)  # (an archived thread's images are kept)


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


@pytest.mark.parametrize(("status", "count"), [(503, 1), (429, 5)])
async def test_an_archived_thread_discord_failed_on_is_asked_for_again(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    status: int,
    count: int,
) -> None:
    """A 5xx (or 429s until discord.py gives up) asking for the thread is Discord's, not our
    bug, nor the catch-up's end: the rest is read, and the thread again a little later."""
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "RETRY_S", 0.3)
    thread = server.add_thread(world.general, "pics")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await server.post_message(thread, world.bob, "", attachments=[
            ("a.png", shape_png("red", "circle"), "image/png")])  # fmt: skip
        await indexed(bot, 1)
        server.fail_next("GET", rf"^/channels/{thread}$", status, count=count)

        async def post_then_archive() -> dict:
            await upload(server, world, "here.png", "blue")
            posted = await server.post_message(thread, world.bob, "", attachments=[
                ("b.png", shape_png("green", "square"), "image/png")])  # fmt: skip
            await server.archive_thread(thread)
            return posted

        missed = await new_session_missing(server, bot, post_then_archive)
        await attachment_indexed(bot, missed)
        assert [served for _, _, served in server.faults_served] == [status] * count
        await indexed(bot, 3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_channel_quiet_since_its_mark_is_not_asked_for_its_history(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """Each channel read costs a page of 100 messages, one request after another: one whose
    newest message (from the gateway) is no newer than where reading would stop is skipped."""
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        quiet = await server.post_message(world.other, world.alice, "hello")
        await indexed(bot, 1)
        await eventually(lambda: _marked(bot, world.other, int(quiet["id"])))
        asked = len(server.requests)
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "green")
        )
        await attachment_indexed(bot, missed)
        reads = [p for m, p in server.requests[asked:] if m == "GET" and p.endswith("/messages")]
        assert reads == [f"/channels/{world.general}/messages"]


async def test_an_ignored_channel_talked_in_meanwhile_is_not_read(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data", IGNORE_CHANNELS=str(world.other))
    async with running(settings) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        asked = len(server.requests)

        async def talk_and_upload() -> dict:
            await server.post_message(world.other, world.alice, "off the record")
            return await upload(server, world, "missed.png", "green")

        missed = await new_session_missing(server, bot, talk_and_upload)
        await attachment_indexed(bot, missed)
        reads = [p for m, p in server.requests[asked:] if m == "GET" and p.endswith("/messages")]
        assert reads == [f"/channels/{world.general}/messages"]


async def _marked(bot: Glimpse, channel: int, message: int) -> bool:
    return await bot.index.last_message_id(channel) == message


async def test_a_missed_upload_after_much_talk_is_read_newest_first(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """More messages than INDEX_PER_CHANNEL since the last indexed image: the catch-up reads
    the newest ones, where the upload is, not the oldest after the mark."""
    settings = bot_settings(server, tmp_path / "data", INDEX_PER_CHANNEL="3")
    async with running(settings) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)

        async def talk_then_upload() -> dict:
            for n in range(5):
                await server.post_message(world.general, world.alice, f"chat {n}")
            return await upload(server, world, "after.png", "green")

        missed = await new_session_missing(server, bot, talk_then_upload)
        await attachment_indexed(bot, missed)
        await indexed(bot, 2)


async def test_a_new_session_during_a_catch_up_brings_one_more_after_it(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second catch-up has read the channel when the next session begins: only another
    catch-up after it finds what that session missed. Never two at once."""
    real = history.catch_up
    hold = asyncio.Event()
    hold.set()
    running_now, most, calls = 0, 0, 0
    read, cancelled = asyncio.Event(), asyncio.Event()

    async def held_catch_up(*args: Any) -> int:
        nonlocal running_now, most, calls
        running_now, calls = running_now + 1, calls + 1
        most = max(most, running_now)
        try:
            queued = await real(*args)
            read.set()
            await hold.wait()  # done reading, not yet finished
            return queued
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            running_now -= 1

    monkeypatch.setattr(history, "catch_up", held_catch_up)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        assert calls == 1  # at start
        hold.clear()
        first = await new_session_missing(
            server, bot, lambda: upload(server, world, "a.png", "green")
        )
        await attachment_indexed(bot, first)  # read by the second catch-up, which is held
        second = await new_session_missing(
            server, bot, lambda: upload(server, world, "b.png", "blue")
        )
        assert calls == 2  # the third waits for the second
        hold.set()
        await attachment_indexed(bot, second)
        assert calls == 3 and most == 1

        hold.clear()  # a catch-up still running when the bot closes is cancelled
        read.clear()
        await new_session_missing(server, bot, lambda: upload(server, world, "c.png", "yellow"))
        await asyncio.wait_for(read.wait(), 10)
        assert calls == 4
    assert cancelled.is_set()


async def test_a_guild_unavailable_at_start_is_caught_up_when_it_comes_back(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """An outage of the guild at start: its channels are unknown when the catch-up runs, so
    they are read once Discord sends the guild (gateway-events.mdx, "Guild Create")."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
    missed = await upload(server, world, "while-down.png", "green")
    server.outages.add(world.guild)
    async with running(settings) as bot:
        await asyncio.sleep(0.5)
        assert bot.get_guild(world.guild) is None or bot.get_guild(world.guild).unavailable
        await server.end_outage(world.guild)
        await attachment_indexed(bot, missed)
        await indexed(bot, 2)


async def test_a_server_back_from_an_outage_is_the_only_one_read_again(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """The other servers' channels missed nothing: reading them again would only cost
    requests (one per channel)."""
    second = server.add_guild("Second")
    server.add_member(second, world.bob)
    lounge = server.add_channel(second, "lounge")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        png = shape_png("green", "circle")
        await server.post_message(lounge, world.bob, "", attachments=[("a.png", png, "image/png")])
        await indexed(bot, 2)
        server.start_outage(second)

        async def gone() -> bool:
            guild = bot.get_guild(second)
            return guild is None or guild.unavailable

        await eventually(gone)
        # Seen live, but newer than #general's written mark: a full catch-up would read it.
        await server.post_message(world.general, world.alice, "meanwhile, elsewhere")
        png = shape_png("blue", "circle")
        missed = await server.post_message(
            lounge, world.bob, "", attachments=[("b.png", png, "image/png")]
        )
        asked = len(server.requests)
        await server.end_outage(second)
        await attachment_indexed(bot, missed)
        read = {path for method, path in server.requests[asked:]
                if method == "GET" and path.endswith("/messages")}  # fmt: skip
        assert read == {f"/channels/{lounge}/messages"}


async def test_a_server_back_while_a_failed_catch_up_waits_brings_a_full_one(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other servers' channels are still unread then: the catch-up reads them too."""
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "RETRY_S", 3600.0)
    calls = second_catch_up_fails(monkeypatch)
    second = server.add_guild("Second")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "green")
        )
        assert calls() == 2
        server.start_outage(second)
        await server.end_outage(second)
        await attachment_indexed(bot, missed)


async def test_a_retry_is_dropped_once_a_full_catch_up_has_read_it_all(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed catch-up arms a retry; a new session's catch-up reads everything first, so the
    retry would only cost a request per channel again."""
    monkeypatch.setattr(sys.modules["bot.chat.catching_up"], "RETRY_S", 1.0)
    calls = second_catch_up_fails(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        await new_session_missing(server, bot, lambda: upload(server, world, "a.png", "green"))
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "b.png", "blue")
        )
        await attachment_indexed(bot, missed)
        await asyncio.sleep(1.5)
        assert calls() == 3


async def test_a_catch_up_cut_short_is_finished_by_the_next(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up that stops after queuing one of three missed uploads (a crash, say): the next
    one reads on from there, because the oldest was queued first."""
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        real, calls = bot.indexer.submit, 0

        async def submit_then_stop(sources: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("stopped here")
            return await real(sources)

        monkeypatch.setattr(bot.indexer, "submit", submit_then_stop)

        async def three() -> dict:
            for colour in ("green", "blue"):
                await upload(server, world, f"{colour}.png", colour)
            return await upload(server, world, "yellow.png", "yellow")

        await new_session_missing(server, bot, three)
        await eventually(lambda: _true(calls >= 2))
        await indexed(bot, 2)  # the oldest only
        monkeypatch.setattr(bot.indexer, "submit", real)
        await new_session_missing(server, bot, lambda: server.post_message(
            world.general, world.alice, "back"))  # fmt: skip
        await indexed(bot, 4)


async def test_a_live_upload_before_the_catch_up_reaches_its_channel_hides_nothing(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload that arrives as an event before the catch-up has read its channel is not where
    the reading of that channel stops: what was missed before it is still read."""
    go = held_catch_ups(monkeypatch)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await upload(server, world, "before.png", "red")
        await indexed(bot, 1)
        go.clear()
        missed = await new_session_missing(
            server, bot, lambda: upload(server, world, "missed.png", "green")
        )
        live = await upload(server, world, "live.png", "blue")
        await attachment_indexed(bot, live)
        go.set()
        await attachment_indexed(bot, missed)
        await indexed(bot, 3)


async def _true(value: bool) -> bool:
    return value
