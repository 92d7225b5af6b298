"""End-to-end harness: the bot's own startup path against the local Discord-compatible server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import sqlite3
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.app import create_bot
from bot.chat.client import Glimpse
from bot.config import Settings
from tests.conftest import TINY_BLIP, TINY_CLIP, tiny_settings
from tests.fakediscord import FakeDiscord
from tests.fakediscord.payloads import MANAGE_MESSAGES, VIEW_CHANNEL
from tests.shapes import draw_shape

Post = Callable[..., Any]
ROOT = Path(__file__).resolve().parents[2]


class World(types.SimpleNamespace):
    guild: int
    general: int
    other: int
    hidden: int
    alice: int
    bob: int
    carol: int
    mods: int


def shape_png(colour: str, shape: str, size: int = 160, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    draw_shape(random.Random(f"{colour}{shape}{seed}"), colour, shape, size).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with serving(FakeDiscord()) as fake:
        yield fake


@contextlib.asynccontextmanager
async def serving(fake: Any) -> AsyncIterator[Any]:
    """A test server (or one behind a proxy) started, then stopped with discord.py pointed back
    where it was; it must have seen no request it does not know."""
    await fake.start()
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield fake
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        await fake.stop()
    assert fake.unknown_requests == []


@pytest.fixture
def world(server: FakeDiscord) -> World:
    guild = server.add_guild("Shapes")
    alice, bob, carol = (server.add_user(name) for name in ("alice", "bob", "carol"))
    mods = server.add_role(guild, "mods", MANAGE_MESSAGES)
    server.add_member(guild, alice, [mods])
    server.add_member(guild, bob)
    server.add_member(guild, carol)
    general = server.add_channel(guild, "general")
    other = server.add_channel(guild, "other")
    hidden = server.add_channel(
        guild,
        "mods-only",
        overwrites=[
            {"id": guild, "type": 0, "allow": 0, "deny": VIEW_CHANNEL},
            {"id": mods, "type": 0, "allow": VIEW_CHANNEL, "deny": 0},
            {"id": server.bot_role_id(guild), "type": 0, "allow": VIEW_CHANNEL, "deny": 0},
        ],
    )
    return World(
        guild=guild,
        general=general,
        other=other,
        hidden=hidden,
        alice=alice,
        bob=bob,
        carol=carol,
        mods=mods,
    )


def bot_settings(server: FakeDiscord, data_dir: Path, **overrides: str) -> Settings:
    env = {
        "DISCORD_TOKEN": server.token,
        "DISCORD_API_URL": server.api_url,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "DATA_DIR": str(data_dir),
        "COOLDOWN": "0",
    }
    env.update(overrides)
    return tiny_settings(**env)


async def bot_process(
    server: FakeDiscord, data: Path, cwd: Path, *args: str, token: str | None = None, **env: str
) -> asyncio.subprocess.Process:
    """`python -m bot ARGS` as an admin runs it, in a child process whose Discord media host
    names reach the test server (tests/fakediscord/child.py); stdout and stderr are piped."""
    environ = {
        **os.environ,
        **server.child_environment(),
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": token or server.token,
        "DISCORD_API_URL": server.api_url,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "DATA_DIR": str(data),
        "CAPTION_MODEL": str(TINY_BLIP),
        "SEARCH_MODEL": str(TINY_CLIP),
        "COOLDOWN": "0",
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakediscord.child", *args, cwd=cwd, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Glimpse]:
    """The product's own `create_bot`, started as `main()` starts it, closed as SIGTERM does."""
    async with create_bot(settings, guild_ready_timeout=0.05) as bot:
        task = asyncio.create_task(bot.start(settings.discord_token.get()))  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(bot.wait_until_ready(), 10)
            yield bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def glimpse(server: FakeDiscord, world: World, tmp_path: Path) -> AsyncIterator[Glimpse]:
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        yield bot


async def indexed(bot: Glimpse, count: int, timeout: float = 20.0) -> None:
    """Waits until the index holds `count` images and nothing is pending."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        pending = await bot.index.pending_count()
        total = await bot.index.count()
        if not pending and total >= count:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"index holds {total}, {pending} pending; wanted {count}")
        await asyncio.sleep(0.05)


async def is_indexed(bot: Glimpse, message_id: int, attachment_id: int) -> bool:
    """Embedded by the current search model, read from the index's file with its own
    connection (SQLite in WAL mode lets a reader look while the bot writes)."""
    path = bot.settings.data_dir / "index.sqlite3"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT 1 FROM images WHERE message_id = ? AND attachment_id = ? AND model_id = ?",
            (message_id, attachment_id, bot.settings.search_model),
        ).fetchone()
    finally:
        conn.close()
    return row is not None


def answers(message: dict) -> Callable[[dict], bool]:
    """Whether a sent message replies to `message` (its `message_reference`)."""

    def replies(entry: dict) -> bool:
        return (entry.get("message_reference") or {}).get("message_id") == message["id"]

    return replies


async def reply_to(server: FakeDiscord, message: dict, timeout: float = 30) -> dict:
    """The bot's reply to `message`, once it is sent."""
    return await server.wait_for_sent(answers(message), timeout=timeout)


def replies_to(server: FakeDiscord, message: dict) -> list[dict]:
    """Every reply to `message` sent so far."""
    return [entry for entry in server.sent if answers(message)(entry)]


def mentions_disabled(sent: dict[str, Any]) -> bool:
    allowed = sent.get("allowed_mentions")
    return allowed is not None and allowed.get("parse") == [] and not allowed.get("replied_user")


async def sync_commands(server: FakeDiscord) -> None:
    """What an admin does once: `!sync`, from the application's owner."""
    dm = server.dm_channel(server.owner_id)
    await server.post_message(dm, server.owner_id, "!sync")
    reply = await server.wait_for_sent(channel_id=dm)
    assert reply["content"].startswith("Synced "), reply["content"]


def held(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> asyncio.Event:
    """`owner.name` waits until the returned event is set, then runs as before: an answer that
    takes as long as the test wants (past an interaction token's 15 minutes, say)."""
    release = asyncio.Event()
    real = getattr(owner, name)

    async def slow(*args: object, **kwargs: object) -> object:
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, name, slow)
    return release


def held_when_called(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str
) -> tuple[asyncio.Event, asyncio.Event]:
    """As `held`, and also says when `owner.name` was called: (called, release)."""
    called = asyncio.Event()
    release = held(monkeypatch, owner, name)
    slow = getattr(owner, name)

    async def calling(*args: object, **kwargs: object) -> object:
        called.set()
        return await slow(*args, **kwargs)

    monkeypatch.setattr(owner, name, calling)
    return called, release


def posts_tried(server: FakeDiscord, channel: int) -> int:
    """How many times the bot has asked to post in `channel`, refused posts included."""
    return server.requests.count(("POST", f"/channels/{channel}/messages"))


async def another_post_tried(server: FakeDiscord, channel: int, before: int) -> None:
    """Waits until the bot has asked to post in `channel` more than `before` times."""

    async def tried() -> bool:
        return posts_tried(server, channel) > before

    await eventually(tried)


async def at_least(value: int, floor: int) -> bool:
    """For `eventually(lambda: at_least(len(seen), 3))`: the lambda reads the value anew."""
    return value >= floor


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Polls `check` until it holds: gateway events reach the bot asynchronously."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        await asyncio.sleep(0.02)
