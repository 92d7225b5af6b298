"""Faults: failing model calls, Discord errors, lost attachments, disconnects, a sick database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
import torch

from bot import wording
from bot.chat.client import Glimpse
from bot.images import download as downloads
from tests.e2e.harness import (
    World,
    another_post_tried,
    bot_settings,
    eventually,
    held_when_called,
    indexed,
    is_indexed,
    posts_tried,
    running,
    shape_png,
    sync_commands,
)
from tests.fakediscord import FakeDiscord
from tests.fakediscord.retries import shorten_discord_retries

OOPS = "Something went wrong on my side"


def png(name: str, colour: str = "green", shape: str = "circle", seed: int = 0) -> tuple:
    return (name, shape_png(colour, shape, seed=seed), "image/png")


async def caption(server: FakeDiscord, world: World, attachment: tuple, timeout: float = 10) -> str:
    await server.post_message(world.general, world.bob, "!caption", attachments=[attachment])
    return str((await server.wait_for_sent(channel_id=world.general, timeout=timeout))["content"])


def fail_once(target: object, name: str, error: BaseException) -> list[BaseException]:
    """Makes `target.name` raise `error` on its next call only; returns the raised errors."""
    real: Callable[..., Any] = getattr(target, name)
    raised: list[BaseException] = []

    def once(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append(error)
            raise error
        return real(*args, **kwargs)

    setattr(target, name, once)
    return raised


def errors_logged(caplog: pytest.LogCaptureFixture, kind: type[BaseException]) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info and isinstance(r.exc_info[1], kind)
    ]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    shorten_discord_retries(monkeypatch)


@pytest.mark.parametrize(
    ("error", "expected_reply", "level"),
    [
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            "I can't do that right now: the model ran out of memory",
            logging.WARNING,
        ),
        (RuntimeError("the model broke"), OOPS, logging.ERROR),
    ],
    ids=["cuda-oom", "runtime-error"],
)
async def test_a_failing_caption_model_gets_a_clear_reply_and_the_next_works(
    server: FakeDiscord,
    world: World,
    glimpse: Glimpse,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
    expected_reply: str,
    level: int,
) -> None:
    raised = fail_once(await glimpse.vision.captioner(), "join", error)
    reply = await caption(server, world, png("a.png"))
    assert raised == [error]
    assert reply.startswith(expected_reply) and "Traceback" not in reply, reply
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is error]
    assert [r.levelno for r in logged] == [level]  # logged once, with its traceback
    assert await caption(server, world, png("b.png", "red", "square")) == "a red square"


async def test_a_failing_embedding_is_logged_and_retried(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    raised = fail_once(await glimpse.vision.embedder(), "predict_images", RuntimeError("boom"))
    await server.post_message(world.general, world.bob, "", attachments=[png("a.png")])
    await indexed(glimpse, 1, timeout=15)
    assert raised and errors_logged(caplog, RuntimeError)


@pytest.mark.usefixtures("fast_retries")
async def test_discord_server_errors_and_rate_limits_on_send_are_retried(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    send = r"^/channels/\d+/messages$"
    server.fail_next("POST", send, 500)
    assert await caption(server, world, png("a.png")) == "a green circle"
    server.fail_next("POST", send, 429, retry_after=0.02)
    assert await caption(server, world, png("b.png", "blue", "square")) == "a blue square"
    server.fail_next("POST", send, 502)
    server.fail_next("POST", send, 504)
    server.fail_next("POST", send, 429, retry_after=0.02)
    assert await caption(server, world, png("c.png", "red", "triangle")) == "a red triangle"
    assert [status for _, _, status in server.faults_served] == [500, 429, 502, 504, 429]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.usefixtures("fast_retries")
async def test_a_reply_discord_refuses_for_good_is_logged_and_the_bot_goes_on(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    """discord.py does not retry a 503; then the error reply fails too. Neither stops the bot."""
    server.fail_next("POST", r"^/channels/\d+/messages$", 503, count=2)
    await server.post_message(world.general, world.bob, "!caption", attachments=[png("a.png")])

    async def both_refused() -> bool:
        return len(server.faults_served) == 2

    await eventually(both_refused)
    assert [status for _, _, status in server.faults_served] == [503, 503]
    assert errors_logged(caplog, discord.DiscordServerError)
    assert await caption(server, world, png("b.png", "red", "circle")) == "a red circle"
    assert [e["content"] for e in server.sent] == ["a red circle"]


async def test_a_discord_server_error_in_a_command_is_discords_not_ours(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    """`!caption` with no image reads the channel's history; a 503 there (discord.py does not
    retry one) is Discord's trouble for now: the member is told so, not that we have a bug."""
    await server.post_message(world.general, world.bob, "", attachments=[png("a.png")])
    server.fail_next("GET", r"^/channels/\d+/messages$", 503)
    await server.post_message(world.general, world.alice, "!caption")
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == wording.DISCORD_TROUBLE
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await caption(server, world, png("b.png", "red", "circle")) == "a red circle"


async def test_an_attachment_that_is_gone_gets_a_clear_reply(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    server.fail_next("GET", r"^/attachments/.*/gone\.png$", 404, count=100)
    reply = await caption(server, world, png("gone.png"))
    assert reply == "I couldn't get that image: the image is gone (deleted, or its link expired)."
    assert await caption(server, world, png("here.png", "red", "circle")) == "a red circle"


async def test_a_cdn_hiccup_costs_a_caption_nothing(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    server.fail_next("GET", r"^/attachments/.*/busy\.png$", 503)
    server.fail_next("GET", r"^/attachments/.*/busy\.png$", 429, retry_after=0.2)
    assert await caption(server, world, png("busy.png", "red", "circle")) == "a red circle"
    assert [status for _, _, status in server.faults_served] == [503, 429]


async def test_an_attachment_that_stalls_times_out_with_a_clear_reply(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "DOWNLOAD_TIMEOUT", aiohttp.ClientTimeout(total=0.5))
    # A sick CDN node: it answers the headers, then nothing. (The URL stays Discord's own.)
    server.stall_media(r"/slow\.png$")
    reply = await caption(server, world, png("slow.png"))
    assert reply == "I couldn't get that image: fetching the image timed out."
    assert await caption(server, world, png("fast.png", "yellow", "square")) == "a yellow square"


async def test_uploads_during_a_gateway_disconnect_are_indexed_after_the_resume(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await server.disconnect(resumable=True)
    posted = [
        await server.post_message(
            world.general, world.bob, "", attachments=[png(f"{i}.png", "yellow", "triangle", i)]
        )
        for i in range(3)
    ]
    await server.wait_until_ready(timeout=15)
    assert server.resumes == 1 and server.identifies == 1
    await indexed(glimpse, 3)
    for message in posted:
        key = int(message["id"]), int(message["attachments"][0]["id"])
        assert await is_indexed(glimpse, *key)
    await server.post_message(world.general, world.alice, "!find a yellow triangle")
    reply = await server.wait_for_sent(channel_id=world.general)
    assert any(reply["embeds"][0]["url"].endswith(f"/{m['id']}") for m in posted)


async def short_busy_timeout(bot: Glimpse) -> None:
    """SQLite waits 5 s for a lock before giving up; the test need not wait that long."""
    await bot.index._workers.run("db", bot.index._store._conn.execute, "PRAGMA busy_timeout = 200")


@contextlib.contextmanager
def database_locked(data: Path) -> Iterator[None]:
    """Another process holds the index's write lock meanwhile (a backup tool, say)."""
    other = sqlite3.connect(data / "index.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_locked_database_is_reported_and_the_bot_keeps_answering(
    server: FakeDiscord, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    async with running(bot_settings(server, data)) as bot:
        await short_busy_timeout(bot)
        with database_locked(data):
            await server.post_message(world.general, world.bob, "!forget")
            reply = await server.wait_for_sent(channel_id=world.general)
            assert reply["content"].startswith(OOPS), reply["content"]
            assert errors_logged(caplog, sqlite3.OperationalError)
            # Captions need no database: they go on while it is locked.
            assert await caption(server, world, png("a.png", "red", "circle")) == "a red circle"
        await server.post_message(world.general, world.carol, "", attachments=[png("b.png")])
        await indexed(bot, 1)
        await server.post_message(world.general, world.bob, "!forget")
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["content"].startswith("Removed "), reply["content"]


async def test_an_upload_while_the_database_is_locked_is_indexed_once_it_is_free(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = bot_settings(server, data)
    async with running(settings) as bot:
        await short_busy_timeout(bot)
        with database_locked(data):
            locked = await server.post_message(
                world.general, world.bob, "", attachments=[png("a.png")]
            )
            await asyncio.sleep(0.5)  # the bot gives up on the lock after 0.2 s
        await server.post_message(world.general, world.bob, "", attachments=[png("b.png", "red")])
        await indexed(bot, 1)
    async with running(settings) as bot:  # indexed before the stop, or queued for this start
        key = int(locked["id"]), int(locked["attachments"][0]["id"])
        await indexed(bot, 1)
        await asyncio.sleep(0.5)
        assert await is_indexed(bot, *key)


async def test_an_upload_deleted_while_the_database_is_locked_stays_out(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """The upload is held in memory until the database answers; deleted meanwhile, it must
    not be queued then (deleted stays deleted)."""
    data = tmp_path / "data"
    async with running(bot_settings(server, data)) as bot:
        await short_busy_timeout(bot)
        with database_locked(data):
            gone = await server.post_message(
                world.general, world.bob, "", attachments=[png("a.png")]
            )
            await asyncio.sleep(0.5)  # the bot gives up on the lock after 0.2 s: held
            await server.delete_message(world.general, int(gone["id"]))
            await asyncio.sleep(0.3)
        await server.post_message(world.general, world.bob, "", attachments=[png("b.png", "red")])
        await indexed(bot, 1)
        await asyncio.sleep(0.5)
        assert await bot.index.count() == 1
        assert not await is_indexed(bot, int(gone["id"]), int(gone["attachments"][0]["id"]))


async def test_a_full_disk_is_reported_and_indexing_recovers(
    server: FakeDiscord,
    world: World,
    glimpse: Glimpse,
    caplog: pytest.LogCaptureFixture,
) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    fail_once(glimpse.index._store, "add", full)
    await server.post_message(world.general, world.carol, "", attachments=[png("a.png")])
    await indexed(glimpse, 1, timeout=15)  # the batch is retried once there is room
    # One line for the admin, no traceback: the disk is theirs to fix, and no image pays for it.
    refused = [r for r in caplog.records if "refused work (database or disk is full)" in r.message]
    assert [r.levelno for r in refused] == [logging.ERROR]

    fail_once(glimpse.index._store, "forget_author", full)
    await server.post_message(world.general, world.carol, "!forget")
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"].startswith(OOPS), reply["content"]
    assert len(errors_logged(caplog, sqlite3.OperationalError)) == 1  # the command's failure
    assert await caption(server, world, png("b.png", "blue", "circle")) == "a blue circle"


async def test_a_command_deleted_before_its_answer_gets_none(
    server: FakeDiscord,
    world: World,
    glimpse: Glimpse,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Discord refuses a reply to a deleted message (400, code 50035): a caption, or the error
    reply for a download that failed, is dropped, not reported as the bot's own failure."""
    captioned, release = asyncio.Event(), asyncio.Event()
    real_caption = glimpse.vision.caption

    async def held(*args: Any, **kwargs: Any) -> str:
        text = await real_caption(*args, **kwargs)
        captioned.set()
        await release.wait()
        return text

    monkeypatch.setattr(glimpse.vision, "caption", held)
    monkeypatch.setattr(downloads, "DOWNLOAD_TIMEOUT", aiohttp.ClientTimeout(total=0.5))
    server.stall_media(r"/slow\.png$")

    for name, answer_ready in [("a.png", captioned), ("slow.png", None)]:
        command = await server.post_message(
            world.general, world.bob, "!caption", attachments=[png(name)]
        )
        tries = posts_tried(server, world.general)
        if answer_ready is not None:
            await asyncio.wait_for(answer_ready.wait(), 10)
        await server.delete_message(world.general, int(command["id"]))
        release.set()
        await another_post_tried(server, world.general, tries)
    await asyncio.sleep(0.2)
    assert server.sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert await caption(server, world, png("b.png", "yellow", "square")) == "a yellow square"


async def test_any_command_deleted_before_its_answer_is_no_error(
    server: FakeDiscord,
    world: World,
    glimpse: Glimpse,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Commands that reply on their own (here `!alttext`) meet the same refusal: it does the
    work it was asked, and the refused answer is no error."""
    entered, release = held_when_called(monkeypatch, glimpse.index, "set_alt_text")
    command = await server.post_message(world.general, world.alice, "!alttext on")
    await asyncio.wait_for(entered.wait(), 10)
    await server.delete_message(world.general, int(command["id"]))
    tries = posts_tried(server, world.general)
    release.set()
    await another_post_tried(server, world.general, tries)
    await asyncio.sleep(0.2)
    assert server.sent == [] and glimpse.index.describes_images(world.general)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_an_error_after_a_refused_public_answer_stays_the_askers_alone(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    """/caption thinks in public. When Discord refuses its answer for good (a 400 here; discord.py
    retries a webhook's 5xx), the loading message is still there, public: the error, the
    asker's alone, must not fill it (receiving-and-responding.mdx, "Create Followup Message")."""
    await sync_commands(server)
    server.fail_next("PATCH", r"^/webhooks/\d+/[^/]+/messages/@original$", 400)
    it = await server.slash_command(world.general, world.bob, "caption", attachments=[png("a.png")])
    answer = await it.wait_for_response()
    assert [status for _, _, status in server.faults_served] == [400]
    assert answer["ephemeral"] and answer["content"].startswith(OOPS)
    assert "400 Bad Request" in caplog.text  # the refusal is logged as our error
    public = server.messages[world.general].values()
    assert not [m for m in public if (m.get("interaction_metadata") or {}).get("id") == str(it.id)]
