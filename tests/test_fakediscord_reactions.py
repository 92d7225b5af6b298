"""The test server's reactions, as Discord takes and reports them (real discord.py client,
127.0.0.1 only): who may react, what the message then shows, and MESSAGE_REACTION_ADD, sent
only with the reactions intent and checked against gateway-events.mdx's field table."""

from __future__ import annotations

import asyncio

import discord
from discord.ext import commands

from tests.discord_spec.gateway import frame_errors
from tests.fakediscord import ADD_REACTIONS, INVITE_PERMISSIONS, FakeDiscord
from tests.test_fakediscord import StartBot, World, collect, make_bot, server, start_bot, world

__all__ = ["server", "start_bot", "world"]  # fixtures

BIN = "\U0001f5d1\ufe0f"


async def test_a_reaction_reaches_the_bot_for_any_message_as_discord_sends_it(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    server.record_traffic = True
    server.set_everyone_permissions(world.guild, INVITE_PERMISSIONS | ADD_REACTIONS)
    early = await server.post_message(world.general, world.bob, "before the bot started")
    bot = await start_bot(make_bot())  # so the message is not in its cache
    raw = collect(bot, "on_raw_reaction_add")
    await server.react(world.general, int(early["id"]), world.alice, BIN)
    await server.react(world.general, int(early["id"]), world.alice, BIN)  # once is enough
    await server.react(world.general, int(early["id"]), world.bob, "\U0001f5d1")
    hidden = await server.post_message(world.hidden, world.alice, "mods only")
    await server.react(world.hidden, int(hidden["id"]), world.alice)  # the bot cannot see it
    await asyncio.sleep(0.05)
    assert [(e.user_id, e.emoji.name) for e in raw] == [(world.alice, BIN), (world.bob, "🗑")]
    first = raw[0]
    assert (first.message_id, first.channel_id, first.guild_id) == (
        int(early["id"]), world.general, world.guild)  # fmt: skip
    assert first.message_author_id == world.bob and first.emoji.id is None
    assert first.member is not None and world.mods in [r.id for r in first.member.roles]
    channel = bot.get_channel(world.general)
    assert isinstance(channel, discord.TextChannel)
    fetched = await channel.fetch_message(int(early["id"]))
    assert [(str(r.emoji), r.count, r.me) for r in fetched.reactions] == [
        (BIN, 1, False), ("🗑", 1, False)]  # fmt: skip
    frames = [t["frame"] for t in server.traffic if t["kind"] == "gateway"]
    sent = [f for f in frames if f["t"] == "MESSAGE_REACTION_ADD"]
    assert len(sent) == 2 and [e for f in sent for e in frame_errors(f)] == []


async def test_reacting_needs_what_discord_asks_for(server: FakeDiscord, world: World) -> None:
    message = await server.post_message(world.general, world.bob, "hello")
    target = world.general, int(message["id"])
    try:
        await server.react(*target, world.bob)  # no Add Reactions: nobody may be the first
        raise AssertionError("the first reaction needs Add Reactions")
    except ValueError:
        pass
    server.set_everyone_permissions(world.guild, INVITE_PERMISSIONS | ADD_REACTIONS)
    await server.react(*target, world.bob)
    server.set_everyone_permissions(world.guild, INVITE_PERMISSIONS)
    await server.react(*target, world.alice)  # joining a reaction needs no Add Reactions
    assert server.messages[world.general][target[1]]["reactions"][0]["count"] == 2


async def test_without_the_reactions_intent_none_is_sent(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    server.set_everyone_permissions(world.guild, INVITE_PERMISSIONS | ADD_REACTIONS)
    intents = discord.Intents.default()
    intents.guild_reactions = False
    bot = await start_bot(commands.Bot("!", intents=intents, guild_ready_timeout=0.05))
    raw = collect(bot, "on_raw_reaction_add")
    message = await server.post_message(world.general, world.bob, "hello")
    await server.react(world.general, int(message["id"]), world.alice)
    await asyncio.sleep(0.05)
    assert raw == []
    assert server.session_intents is not None and not server.session_intents & (1 << 10)
