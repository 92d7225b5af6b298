"""`!sync`: publishing the slash commands everywhere, to one server, or clearing that server's
copies; anything else is refused without syncing (it once synced everywhere and said so)."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from bot import wording, wording_commands
from bot.chat.client import Glimpse
from tests.e2e.harness import World, reply_to, sync_commands
from tests.fakediscord import FakeDiscord

COMMANDS = {("caption", 1), ("find", 1), ("Caption image", 3)}


async def sync(server: FakeDiscord, channel: int, text: str) -> str:
    """The owner types `text` in `channel`; the bot's reply."""
    posted = await server.post_message(channel, server.owner_id, text)
    return str((await reply_to(server, posted))["content"])


def syncs(server: FakeDiscord) -> list[str]:
    """The command syncs (bulk overwrites) the bot has sent, global or per server."""
    return [path for method, path in server.requests if method == "PUT" and "/commands" in path]


@pytest.mark.parametrize(
    "argument", ["hre", "everywhere", "here!", "here please", "clear everything"]
)
async def test_an_unknown_argument_is_refused_without_syncing(
    server: FakeDiscord, world: World, glimpse: Glimpse, argument: str
) -> None:
    assert await sync(server, world.general, f"!sync {argument}") == wording.SYNC_USAGE
    dm = server.dm_channel(server.owner_id)
    assert await sync(server, dm, f"!sync {argument}") == wording.SYNC_USAGE
    assert syncs(server) == [] and server.commands == {}


@pytest.mark.parametrize("form", ["here", "clear", "HERE"])
async def test_a_server_form_in_a_dm_is_refused_without_syncing(
    server: FakeDiscord, glimpse: Glimpse, form: str
) -> None:
    dm = server.dm_channel(server.owner_id)
    assert await sync(server, dm, f"!sync {form}") == wording.sync_needs_server(form.lower())
    assert syncs(server) == [] and server.commands == {}


async def test_here_then_everywhere_then_clear_leaves_each_command_once(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    reply = await sync(server, world.general, "!sync HERE")  # any case, like `reposts ON`
    assert reply.startswith("Synced 3 commands to this server")
    assert set(server.commands[world.guild]) == COMMANDS and None not in server.commands
    reply = await sync(server, world.general, "!sync")
    assert reply.startswith("Synced 3 commands to every server")
    assert set(server.commands[None]) == COMMANDS  # and still in the server: shown twice there
    assert set(server.commands[world.guild]) == COMMANDS

    assert await sync(server, world.general, "!sync clear") == wording.SYNC_CLEARED
    assert server.commands[world.guild] == {} and set(server.commands[None]) == COMMANDS
    # The global copy answers in that server, as ever.
    interaction = await server.slash_command(world.general, world.bob, "find", {"query": "x"})
    response = await interaction.wait_for_response(timeout=30)
    assert "no images indexed" in response["content"]


async def test_only_owners_may_sync(server: FakeDiscord, world: World, glimpse: Glimpse) -> None:
    for text in ("!sync", "!sync clear", "!sync hre"):
        posted = await server.post_message(world.general, world.alice, text)
        assert (await reply_to(server, posted))["content"] == wording.OWNERS_ONLY
    assert syncs(server) == []


async def test_commands_are_offered_only_where_the_bot_can_answer(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """In servers and DMs with the bot; not to a user who installs the app for themselves, nor
    in group DMs, where it could read nothing (application-commands.mdx, "Contexts")."""
    assert (await sync(server, world.general, "!sync")).startswith("Synced 3 commands")
    for command in server.commands[None].values():
        assert command["integration_types"] == [0], command
        assert command["contexts"] == [0, 1], command


async def test_a_sync_held_back_by_discord_says_so(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """discord.py sleeps through a 429's whole Retry-After, hours once the 200 creates a day
    are spent: the owner hears why after a minute instead of nothing."""

    async def held_back(**_: object) -> list[object]:
        await asyncio.sleep(3600)  # as discord.py waits out a long Retry-After
        return []

    # The module the extension loader made (discord.py loads each extension afresh).
    monkeypatch.setattr(sys.modules["cogs.admin"], "SYNC_WAIT_S", 0.2)
    monkeypatch.setattr(glimpse.tree, "sync", held_back)
    assert await sync(server, world.general, "!sync") == wording.SYNC_HELD


async def test_a_command_the_bot_no_longer_has_says_to_publish_them_again(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    """After an update that renamed a command, members' clients still offer the old one
    until the commands are published again; discord.py then finds no such command. That is
    no bug of the bot's: the asker hears what to do, and nothing is logged as a failure."""
    await sync_commands(server)
    find = server.commands[None][("find", 1)]
    server.commands[None][("search", 1)] = dict(find, id=str(server.ids.next()), name="search")
    it = await server.slash_command(world.general, world.bob, "search", {"query": "cats"})
    response = await it.wait_for_response()
    assert response["content"] == wording_commands.STALE_COMMAND
    assert response["ephemeral"] is True
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
