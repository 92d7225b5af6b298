"""The fake Discord server against the real discord.py client (no network beyond 127.0.0.1)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests import netguard
from tests.fakediscord import INVITE_PERMISSIONS, MANAGE_THREADS, VIEW_CHANNEL, FakeDiscord
from tests.fakediscord.retries import shorten_discord_retries

StartBot = Callable[[commands.Bot], Awaitable[commands.Bot]]


@pytest.fixture(autouse=True, scope="module")
def _netguard() -> Iterator[None]:
    was_installed = netguard.installed()
    netguard.install()
    yield
    if not was_installed:
        netguard.uninstall()


def png(size: int = 8, colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


class World(types.SimpleNamespace):
    guild: int
    general: int
    hidden: int
    alice: int
    bob: int
    mods: int


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    srv = FakeDiscord()
    await srv.start()
    old_base, old_gateway = (
        discord.http.Route.BASE,
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )
    discord.http.Route.BASE = srv.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(srv.gateway_url)
    try:
        yield srv
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
        await srv.stop()
    assert srv.unknown_requests == [] and srv.server_errors == []


@pytest.fixture
def world(server: FakeDiscord) -> World:
    guild = server.add_guild("Shapes")
    alice, bob = server.add_user("alice"), server.add_user("bob")
    mods = server.add_role(guild, "mods", 0)
    server.add_member(guild, alice, [mods])
    server.add_member(guild, bob)
    general = server.add_channel(guild, "general")
    hidden = server.add_channel(
        guild,
        "mods-only",
        overwrites=[
            {"id": guild, "type": 0, "allow": 0, "deny": VIEW_CHANNEL},
            {"id": mods, "type": 0, "allow": VIEW_CHANNEL, "deny": 0},
        ],
    )
    return World(guild=guild, general=general, hidden=hidden, alice=alice, bob=bob, mods=mods)


@pytest.fixture
async def start_bot(server: FakeDiscord) -> AsyncIterator[StartBot]:
    started: list[tuple[commands.Bot, asyncio.Task[None]]] = []

    async def start(bot: commands.Bot) -> commands.Bot:
        await bot.login(server.token)
        started.append((bot, asyncio.create_task(bot.connect())))
        await server.wait_until_ready()
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        return bot

    yield start
    for bot, task in started:
        await bot.close()
        await asyncio.wait_for(task, 5)


def collect(bot: commands.Bot, event: str) -> list[Any]:
    """Record the first argument of every ``event`` (e.g. "on_message") the bot dispatches."""
    seen: list[Any] = []

    async def listener(*args: Any) -> None:
        seen.append(args[0] if args else None)

    bot.add_listener(listener, event)
    return seen


class FindFlags(commands.FlagConverter, delimiter=":", prefix=""):
    query: str = commands.flag(positional=True)
    top: commands.Range[int, 1, 10] = 5
    scope: Literal["channel", "server"] = "channel"


def make_bot(*, message_content: bool = True) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = True
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)

    @bot.command()
    async def size(ctx: commands.Context) -> None:
        att = ctx.message.attachments[0]
        data = await att.read()
        digest = hashlib.sha256(data).hexdigest()[:8]
        await ctx.message.reply(f"{att.filename}: {len(data)} bytes {digest}", mention_author=False)

    return bot


async def test_login_and_ready(server: FakeDiscord, world: World, start_bot: StartBot) -> None:
    t0 = time.perf_counter()
    bot = await start_bot(make_bot())
    elapsed = time.perf_counter() - t0
    assert bot.user is not None and bot.user.id == server.application_id
    assert bot.application_id == server.application_id
    guild = bot.get_guild(world.guild)
    assert guild is not None and guild.name == "Shapes"
    assert guild.me is not None and guild.get_member(world.alice) is not None
    assert guild.member_count == 4 and guild.chunked
    assert guild.get_channel(world.general).name == "general"  # type: ignore[union-attr]
    info = await bot.application_info()
    assert info.owner.id == server.owner_id
    assert server.identifies == 1 and server.resumes == 0
    assert elapsed < 1.0, elapsed


async def test_bad_token_is_rejected(server: FakeDiscord) -> None:
    bot = make_bot()
    with pytest.raises(discord.LoginFailure):
        await bot.login("not-the-token")
    await bot.close()


async def test_attachment_download_and_reply(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    await start_bot(make_bot())
    data = png(16)
    msg = await server.post_message(
        world.general, world.alice, "!size", attachments=[("shape.png", data, "image/png")]
    )
    att = msg["attachments"][0]
    assert att["size"] == len(data) and (att["width"], att["height"]) == (16, 16)
    reply = await server.wait_for_sent(channel_id=world.general)
    digest = hashlib.sha256(data).hexdigest()[:8]
    assert reply["content"] == f"shape.png: {len(data)} bytes {digest}"
    assert reply["kind"] == "message" and reply["type"] == 19
    assert reply["message_reference"]["message_id"] == msg["id"]
    assert reply["allowed_mentions"]["replied_user"] is False
    # Fetched from Discord's CDN by its real name (routed to the test server), not the API host.
    assert att["url"].startswith(f"https://cdn.discordapp.com/attachments/{world.general}/")
    assert att["proxy_url"].startswith("https://media.discordapp.net/attachments/")
    assert [(host, status) for host, _, status in server.media_requests] == [
        ("cdn.discordapp.com", 200)
    ]


async def test_history_fetch_and_typing(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    early = [await server.post_message(world.general, world.bob, f"early {i}") for i in range(3)]
    bot = await start_bot(make_bot())
    late = await server.post_message(world.general, world.alice, "late")
    channel = bot.get_channel(world.general)
    assert isinstance(channel, discord.TextChannel)
    newest_first = [m async for m in channel.history(limit=10)]
    assert [m.content for m in newest_first] == ["late", "early 2", "early 1", "early 0"]
    assert newest_first[1].attachments == [] and newest_first[1].author.id == world.bob
    two = [
        m.content async for m in channel.history(limit=2, before=discord.Object(int(late["id"])))
    ]
    assert two == ["early 2", "early 1"]
    after = [m.content async for m in channel.history(after=discord.Object(int(early[0]["id"])))]
    assert after == ["early 1", "early 2", "late"]  # after= gives oldest first in discord.py
    fetched = await channel.fetch_message(int(early[1]["id"]))
    assert fetched.content == "early 1"
    with pytest.raises(discord.NotFound) as info:
        await channel.fetch_message(12345)
    assert info.value.code == 10008
    async with channel.typing():
        pass
    assert server.typing == [world.general]


async def test_permissions_from_roles_and_overwrites(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot())
    guild = bot.get_guild(world.guild)
    assert guild is not None
    hidden, general = guild.get_channel(world.hidden), guild.get_channel(world.general)
    alice, bob = guild.get_member(world.alice), guild.get_member(world.bob)
    assert hidden is not None and general is not None and alice and bob
    assert hidden.permissions_for(alice).view_channel
    assert not hidden.permissions_for(bob).view_channel
    assert not hidden.permissions_for(guild.me).view_channel
    assert general.permissions_for(bob).send_messages
    for member in (alice, bob, guild.me):
        for channel in (hidden, general):
            expected = server.permissions_for(channel.id, member.id)
            assert channel.permissions_for(member).value == expected
    with pytest.raises(discord.Forbidden) as info:
        await hidden.send("hi")  # type: ignore[union-attr]
    assert info.value.code == 50001
    seen = collect(bot, "on_message")
    await server.post_message(world.hidden, world.alice, "secret")
    await server.post_message(world.general, world.alice, "public")
    await asyncio.sleep(0.05)
    assert [m.content for m in seen] == ["public"]


async def test_slash_command_defer_and_followup(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = make_bot()

    @bot.tree.command(name="describe", description="Describe an image")
    async def describe(
        interaction: discord.Interaction, image: discord.Attachment, detail: int = 1
    ) -> None:
        await interaction.response.defer(thinking=True)
        data = await image.read()
        await interaction.followup.send(f"{image.filename} {len(data)} detail={detail}")

    @bot.tree.command(name="progress", description="Edit the original response")
    async def progress(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="50%")
        await interaction.edit_original_response(content="done")

    @bot.hybrid_command(description="Find images")
    async def find(ctx: commands.Context, *, flags: FindFlags) -> None:
        await ctx.send(f"{flags.query.strip(chr(34))}|{flags.top}|{flags.scope}")

    @bot.tree.command(name="ping", description="Ping")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", ephemeral=True)

    await start_bot(bot)
    synced = await bot.tree.sync()
    assert sorted(c.name for c in synced) == ["describe", "find", "ping", "progress"]
    assert {c["name"] for c in server.commands[None].values()} == {c.name for c in synced}
    data = png(12)
    it = await server.slash_command(
        world.general,
        world.alice,
        "describe",
        {"detail": 3},
        attachments=[("cat.png", data, "image/png")],
    )
    response = await it.wait_for_response()
    assert response["content"] == f"cat.png {len(data)} detail=3"
    assert it.response_type == 5 and response["kind"] == "followup"
    assert response["id"] == it.original["id"]  # type: ignore[index]
    assert response["ephemeral"] is False
    assert server.messages[world.general][int(response["id"])]["content"] == response["content"]

    pong = await (await server.slash_command(world.general, world.bob, "ping")).wait_for_response()
    assert pong["content"] == "pong" and pong["ephemeral"] is True
    assert pong["kind"] == "interaction_response"
    assert int(pong["id"]) not in server.messages[world.general]

    it = await server.slash_command(world.general, world.bob, "progress")
    done = await it.wait_for_response(predicate=lambda e: e["content"] == "done")
    assert done["kind"] == "edit_original" and [e["content"] for e in it.entries] == ["50%", "done"]

    options = {"query": "a red square", "top": 3, "scope": "server"}
    found = await (
        await server.slash_command(world.general, world.bob, "find", options)
    ).wait_for_response()
    assert found["content"] == "a red square|3|server"
    await server.post_message(world.general, world.bob, '!find "a red square" top: 3 scope: server')
    assert (await server.wait_for_sent(lambda e: e["kind"] == "message"))["content"] == found[
        "content"
    ]


async def test_message_context_menu_sees_attachments(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = make_bot(message_content=False)
    got: list[discord.Message] = []

    async def count_images(interaction: discord.Interaction, message: discord.Message) -> None:
        got.append(message)
        names = ",".join(a.filename for a in message.attachments)
        await interaction.response.send_message(f"{len(message.attachments)}: {names}")

    menu = app_commands.ContextMenu(name="Count images", callback=count_images)
    bot.tree.add_command(menu, guild=discord.Object(world.guild))
    await start_bot(bot)
    await bot.tree.sync(guild=discord.Object(world.guild))
    assert ("Count images", 3) in server.commands[world.guild]
    msg = await server.post_message(
        world.general,
        world.alice,
        "look",
        attachments=[("a.png", png(), "image/png"), ("b.png", png(), "image/png")],
    )
    it = await server.context_menu(world.general, world.bob, "Count images", int(msg["id"]))
    response = await it.wait_for_response()
    assert response["content"] == "2: a.png,b.png"
    assert got[0].content == "look" and got[0].author.id == world.alice
    assert await got[0].attachments[0].read() == png()


async def test_resume_replays_missed_events(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot())
    resumed = collect(bot, "on_resumed")
    waiter = asyncio.create_task(bot.wait_for("message", check=lambda m: m.content == "missed"))
    await server.disconnect()
    await server.post_message(world.general, world.alice, "missed")
    await server.wait_until_ready()
    message = await asyncio.wait_for(waiter, 5)
    assert message.channel.id == world.general
    await asyncio.sleep(0.01)
    assert resumed == [None]
    assert server.resumes == 1 and server.identifies == 1
    assert server.gateway_paths[-1].startswith("/gateway-resume")
    await server.post_message(
        world.general, world.alice, "!size", attachments=[("x.png", png(), "image/png")]
    )
    assert (await server.wait_for_sent())["content"].startswith("x.png")


async def test_non_resumable_disconnect_reidentifies(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = make_bot()

    async def no_identify_delay(shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before every re-IDENTIFY (not the first): skip that here."""

    bot.before_identify_hook = no_identify_delay  # type: ignore[method-assign]
    await start_bot(bot)
    await server.disconnect(resumable=False)
    lost = await server.post_message(world.general, world.alice, "lost")
    await server.wait_until_ready()
    assert server.identifies == 2 and server.resumes == 0
    channel = bot.get_channel(world.general)
    assert isinstance(channel, discord.TextChannel)
    assert (await channel.fetch_message(int(lost["id"]))).content == "lost"


async def test_server_errors_and_rate_limits_are_retried(
    server: FakeDiscord, world: World, start_bot: StartBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    shorten_discord_retries(monkeypatch)
    bot = await start_bot(make_bot())
    channel = bot.get_channel(world.general)
    assert isinstance(channel, discord.TextChannel)
    server.fail_next("POST", r"^/channels/\d+/messages$", 500)
    sent = await channel.send("after a 500")
    assert sent.content == "after a 500"
    server.fail_next("POST", r"^/channels/\d+/messages$", 429, retry_after=0.02)
    await channel.send("after a 429")
    assert [s for _, _, s in server.faults_served] == [500, 429]
    posts = [r for r in server.requests if r == ("POST", f"/channels/{world.general}/messages")]
    assert len(posts) == 4
    assert [e["content"] for e in server.sent] == ["after a 500", "after a 429"]


async def test_direct_messages(server: FakeDiscord, world: World, start_bot: StartBot) -> None:
    bot = make_bot(message_content=False)  # DMs keep their content anyway

    @bot.tree.command(name="whoami", description="Who am I")
    async def whoami(interaction: discord.Interaction) -> None:
        kind = type(interaction.channel).__name__
        await interaction.response.send_message(f"{interaction.user.name} in {kind}")

    await start_bot(bot)
    dm = server.dm_channel(world.bob)
    await server.post_message(dm, world.bob, "!size", attachments=[("d.png", png(), "image/png")])
    reply = await server.wait_for_sent(channel_id=dm)
    assert reply["content"].startswith("d.png:") and "guild_id" not in reply
    user = await bot.fetch_user(world.alice)
    await user.send("hello alice", file=discord.File(io.BytesIO(b"abc"), "note.txt"))
    entry = await server.wait_for_sent(channel_id=server.dm_channel(world.alice))
    assert entry["content"] == "hello alice" and entry["files"] == [("note.txt", b"abc")]
    assert entry["attachments"][0]["filename"] == "note.txt"
    await bot.tree.sync()
    it = await server.slash_command(dm, world.bob, "whoami")
    assert (await it.wait_for_response())["content"] == "bob in DMChannel"


async def test_message_content_intent_and_edits(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot(message_content=False))
    got = collect(bot, "on_message")
    edits = collect(bot, "on_raw_message_edit")
    deletes = collect(bot, "on_raw_message_delete")
    plain = await server.post_message(
        world.general, world.alice, "plain", attachments=[("p.png", png(), "image/png")]
    )
    await server.post_message(world.general, world.alice, f"<@{server.bot_id}> hi")
    await server.edit_message(world.general, int(plain["id"]), content="edited")
    await server.delete_message(world.general, int(plain["id"]))
    await asyncio.sleep(0.05)
    assert [(m.content, len(m.attachments)) for m in got] == [
        ("", 0),
        (f"<@{server.bot_id}> hi", 0),
    ]
    assert got[1].mentions[0].id == server.bot_id
    assert [e.message_id for e in edits] == [int(plain["id"])]
    assert [e.message_id for e in deletes] == [int(plain["id"])]


async def test_netguard_blocks_remote_addresses(server: FakeDiscord) -> None:
    t0 = time.perf_counter()
    with pytest.raises(netguard.NetworkBlocked, match=r"10\.1\.2\.3"):
        await asyncio.wait_for(asyncio.open_connection("10.1.2.3", 80), timeout=1)
    with socket.socket() as sock, pytest.raises(AssertionError):
        sock.settimeout(0.5)
        sock.connect(("10.1.2.3", 443))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AssertionError):
            await session.get(
                "http://discord.com/api/v10/gateway", timeout=aiohttp.ClientTimeout(1)
            )
        async with session.get(server.api_url + "/gateway") as resp:  # loopback is fine
            assert resp.headers["Content-Type"] == "application/json"
    assert time.perf_counter() - t0 < 0.5


async def test_world_changes_reach_a_connected_bot(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    server.grant_bot(world.guild, MANAGE_THREADS)  # beyond the invite: sees private threads
    bot = await start_bot(make_bot())
    joined, removed = collect(bot, "on_guild_join"), collect(bot, "on_guild_remove")
    other = server.add_guild("Other")
    thread = server.add_thread(world.general, "pics", member_ids=[world.alice])
    managed = server.add_thread(world.general, "staff", private=True, member_ids=[world.alice])
    bot_role = server.bot_role_id(world.guild)
    assert bot_role is not None
    server.set_role_permissions(world.guild, bot_role, INVITE_PERMISSIONS)
    secret = server.add_thread(world.general, "secret", private=True, member_ids=[world.alice])
    await server.post_message(thread, world.alice, "in thread")
    hook = server.add_user("Captain Hook", bot=True)
    await server.post_message(world.general, hook, "from a webhook", webhook=True)
    await server.flush()
    await asyncio.sleep(0.02)
    assert [g.id for g in joined] == [other]
    guild = bot.get_guild(world.guild)
    assert guild is not None and guild.get_thread(thread) is not None
    assert guild.get_thread(managed) is not None  # the bot's role had MANAGE_THREADS then
    assert guild.get_thread(secret) is None  # a private thread the bot is not in
    messages = [m async for m in guild.get_thread(thread).history()]  # type: ignore[union-attr]
    assert [m.content for m in messages] == ["in thread"]
    general = guild.get_channel(world.general)
    assert isinstance(general, discord.TextChannel)
    latest = await anext(general.history(limit=1))
    assert latest.webhook_id == hook and latest.author.bot
    ids = [
        int((await server.post_message(world.general, world.bob, f"m{i}"))["id"]) for i in range(3)
    ]
    await server.bulk_delete(world.general, ids[:2])
    assert [m.content async for m in general.history(limit=5)] == ["m2", "from a webhook"]
    await server.delete_channel(world.hidden)
    await server.remove_bot_from_guild(other)
    await asyncio.sleep(0.02)
    assert guild.get_channel(world.hidden) is None
    assert [g.id for g in removed] == [other] and bot.get_guild(other) is None
    with pytest.raises(discord.Forbidden):
        await bot.fetch_guild(other)


async def test_disallowed_intents_and_unknown_routes(server: FakeDiscord, world: World) -> None:
    server.enabled_intents = 0  # privileged intents switched off in the developer portal
    bot = make_bot()
    await bot.login(server.token)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await asyncio.wait_for(bot.connect(), 5)
    await bot.close()
    headers = {"Authorization": f"Bot {server.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.api_url + "/nope", headers=headers) as r,
    ):
        assert r.status == 404 and (await r.json())["code"] == 0
    assert server.unknown_requests == [("GET", "/nope")]
    server.unknown_requests.clear()
