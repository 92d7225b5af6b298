"""The test server refuses command definitions as Discord does: the documented rules of names,
options and choices (application-commands.mdx, "Application Command Naming", "Application Command
Option Structure" and "Slash Commands"), so that a sync that passes here is not refused there;
and a simulated member runs only what their Discord client would offer them
(tests/fakediscord/offered.py)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.fakediscord import ADMINISTRATOR, USE_APPLICATION_COMMANDS, FakeDiscord, NotOffered
from tests.test_fakediscord import World, server, world

__all__ = ["server", "world"]  # fixtures


def option(name: str, *, required: bool = False, kind: int = 3, **more: Any) -> dict:
    return {"type": kind, "name": name, "description": f"the {name}", "required": required, **more}


def command(*options: dict, name: str = "find", description: str = "Find images") -> dict:
    return {"type": 1, "name": name, "description": description, "options": list(options)}


async def put(server: FakeDiscord, body: list[dict]) -> tuple[int, dict]:
    headers = {"Authorization": f"Bot {server.token}"}
    url = f"{server.api_url}/applications/{server.application_id}/commands"
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.put(url, json=body) as response,
    ):
        return response.status, await response.json()


def refused_at(answer: dict, *path: str) -> str:
    """The code of the field error at `path` of a 50035 answer."""
    assert answer["code"] == 50035, answer
    errors = answer["errors"]
    for part in path:
        errors = errors[part]
    return errors["_errors"][0]["code"]


async def test_a_well_formed_command_is_taken(server: FakeDiscord) -> None:
    choices = [{"name": "Server", "value": "server"}, {"name": "Channel", "value": "channel"}]
    status, body = await put(
        server,
        [
            command(
                option("query", required=True), option("scope", choices=choices), option("don't")
            )
        ],
    )
    assert status == 200 and [c["name"] for c in body] == ["find"]


@pytest.mark.parametrize(
    ("options", "path", "code"),
    [
        ([option("Query")], ("0", "options", "0", "name"), "APPLICATION_COMMAND_INVALID_NAME"),
        ([option("two words")], ("0", "options", "0", "name"), "APPLICATION_COMMAND_INVALID_NAME"),
        ([option("q" * 33)], ("0", "options", "0", "name"), "APPLICATION_COMMAND_INVALID_NAME"),
        (
            [option("query"), option("query")],
            ("0", "options", "1", "name"),
            "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
        ),
        (
            [option("top"), option("query", required=True)],
            ("0", "options", "1", "required"),
            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
        ),
        (
            [option("query", description="")],
            ("0", "options", "0", "description"),
            "BASE_TYPE_BAD_LENGTH",
        ),
        (
            [option("query", description="d" * 101)],
            ("0", "options", "0", "description"),
            "BASE_TYPE_BAD_LENGTH",
        ),
        ([option(f"o{n}") for n in range(26)], ("0", "options"), "BASE_TYPE_MAX_LENGTH"),
        (
            [option("scope", choices=[{"name": f"c{n}", "value": str(n)} for n in range(26)])],
            ("0", "options", "0", "choices"),
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            [option("scope", choices=[{"name": "n" * 101, "value": "v"}])],
            ("0", "options", "0", "choices", "0", "name"),
            "BASE_TYPE_BAD_LENGTH",
        ),
        (
            [option("scope", choices=[{"name": "n", "value": "v" * 101}])],
            ("0", "options", "0", "choices", "0", "value"),
            "BASE_TYPE_BAD_LENGTH",
        ),
        (
            [option("scope", autocomplete=True, choices=[{"name": "n", "value": "v"}])],
            ("0", "options", "0", "autocomplete"),
            "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE",
        ),
        (
            [option("sub", kind=1, options=[option("Bad")])],
            ("0", "options", "0", "options", "0", "name"),
            "APPLICATION_COMMAND_INVALID_NAME",
        ),
    ],
)
async def test_options_against_the_rules_are_refused(
    server: FakeDiscord, options: list[dict], path: tuple[str, ...], code: str
) -> None:
    status, body = await put(server, [command(*options)])
    assert status == 400 and refused_at(body, *path) == code
    assert server.commands.get(None, {}) == {}  # nothing of a refused sync is kept


async def test_a_command_over_8000_characters_in_all_is_refused(server: FakeDiscord) -> None:
    choices = [{"name": "n" * 100, "value": "v" * 100} for _ in range(25)]
    many = [option(f"o{n}", description="d" * 100, choices=choices) for n in range(2)]
    status, body = await put(server, [command(*many)])
    assert status == 400 and refused_at(body, "0") == "APPLICATION_COMMAND_TOO_LARGE"
    status, _ = await put(server, [command(many[0])])  # 5000-odd characters
    assert status == 200


async def test_only_synced_commands_can_be_run(server: FakeDiscord, world: World) -> None:
    with pytest.raises(NotOffered, match="not synced"):
        await server.slash_command(world.general, world.bob, "find", {"query": "a cat"})
    posted = await server.post_message(world.general, world.alice, "look")
    with pytest.raises(NotOffered, match="not synced"):
        await server.context_menu(world.general, world.bob, "Caption", int(posted["id"]))
    assert (await put(server, [command(option("query", required=True))]))[0] == 200
    it = await server.slash_command(world.general, world.bob, "find", {"query": "a cat"})
    assert it.payload["data"]["id"] == server.commands[None][("find", 1)]["id"]


async def test_what_a_client_sends_is_only_the_commands_own_options(
    server: FakeDiscord, world: World
) -> None:
    scopes = [{"name": "Server", "value": "server"}]
    find = command(option("query", required=True), option("scope", choices=scopes))
    assert (await put(server, [find]))[0] == 200
    for options, why in [
        ({"query": "x", "top": 3}, "no option 'top'"),
        ({"scope": "server"}, r"required option\(s\) \['query'\]"),
        ({"query": "x", "scope": "everywhere"}, "not among the choices"),
    ]:
        with pytest.raises(NotOffered, match=why):
            await server.slash_command(world.general, world.bob, "find", options)
    with pytest.raises(NotOffered, match="no subcommand"):
        await server.slash_command(world.general, world.bob, "find query", {"query": "x"})


async def test_where_and_to_whom_a_command_is_offered(server: FakeDiscord, world: World) -> None:
    guild_only = dict(command(name="index", description="Index"), contexts=[0])
    no_dm = dict(command(name="sync", description="Sync"), dm_permission=False)
    for_admins = dict(command(name="admin", description="Admin"), default_member_permissions="0")
    anywhere = command(name="help", description="Help")
    assert (await put(server, [guild_only, no_dm, for_admins, anywhere]))[0] == 200
    dm = server.dm_channel(world.bob)
    for name, why in [("index", "interaction context 1"), ("sync", "dm_permission")]:
        with pytest.raises(NotOffered, match=why):
            await server.slash_command(dm, world.bob, name)
    it = await server.slash_command(dm, world.bob, "help")
    assert it.payload["context"] == 1 and it.payload["authorizing_integration_owners"] == {"0": "0"}

    with pytest.raises(NotOffered, match="default_member_permissions"):
        await server.slash_command(world.general, world.bob, "admin")
    server.set_role_permissions(world.guild, world.mods, ADMINISTRATOR)
    await server.slash_command(world.general, world.alice, "admin")  # an administrator may

    denied = str(USE_APPLICATION_COMMANDS)
    server.set_overwrites(world.general, [{"id": str(world.guild), "type": 0, "allow": "0",
                                           "deny": denied}])  # fmt: skip
    with pytest.raises(NotOffered, match="Use Application Commands"):
        await server.slash_command(world.general, world.bob, "help")
