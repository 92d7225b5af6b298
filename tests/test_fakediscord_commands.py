"""The test server refuses command definitions as Discord does: the documented rules of names,
options and choices (application-commands.mdx, "Application Command Naming", "Application Command
Option Structure" and "Slash Commands"), so that a sync that passes here is not refused there."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.fakediscord import FakeDiscord
from tests.test_fakediscord import server

__all__ = ["server"]  # fixture


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
