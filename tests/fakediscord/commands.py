"""Application command store: the bot's command sync endpoints (global and per guild)."""

from __future__ import annotations

import re

from aiohttp import web

from . import payloads as p
from .rest import API_PREFIX, read_body

# application-commands.mdx, "Application Command Naming": letters, digits, `-_'`, 1-32 long,
# lower case where a letter has a lower case (\w stands in for \p{L}\p{N} and the scripts).
_NAME = re.compile(r"^[-_'\w]{1,32}$")
_SUBCOMMAND_TYPES = (1, 2)
MAX_COMMAND_SIZE = 8000  # application-commands.mdx, "Slash Commands" (the warning)


def _bad_name(name: object) -> bool:
    return not isinstance(name, str) or not _NAME.match(name) or name != name.lower()


def _check_description(description: object, at: str) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        raise p.form_error(at, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")


# The field errors' codes below follow reference.mdx, "Error Messages" in shape; the docs list
# no code for each rule, so the codes are ours (the bot only logs a refused sync).
def _check_options(options: list[dict], at: str) -> int:
    """The documented rules of a command's options (application-commands.mdx, "Application
    Command Option Structure" and its notes): names as commands' and unique, descriptions of
    1-100, required before optional, at most 25 options and 25 choices of 1-100 characters,
    no autocomplete beside choices. Returns the characters they count towards the size."""
    if len(options) > 25:
        raise p.form_error(at, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    size, names, optional_seen = 0, set(), False
    for i, option in enumerate(options):
        name = option.get("name")
        if _bad_name(name):
            raise p.form_error(f"{at}.{i}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
        if name in names:
            raise p.form_error(
                f"{at}.{i}.name",
                "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
                "Option names must be unique",
            )
        names.add(name)
        _check_description(option.get("description"), f"{at}.{i}.description")
        size += len(name) + len(option["description"])
        if option.get("type") in _SUBCOMMAND_TYPES:
            size += _check_options(option.get("options") or [], f"{at}.{i}.options")
            continue
        if option.get("required") and optional_seen:
            why = "Required options must be placed before non-required options"
            raise p.form_error(
                f"{at}.{i}.required", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", why
            )
        optional_seen |= not option.get("required")
        size += _check_choices(option, f"{at}.{i}")
    return size


def _check_choices(option: dict, at: str) -> int:
    choices = option.get("choices") or []
    if len(choices) > 25:
        raise p.form_error(
            f"{at}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
        )
    if choices and option.get("autocomplete"):
        raise p.form_error(
            f"{at}.autocomplete",
            "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE",
            "Autocomplete cannot be set with choices",
        )
    size = 0
    for j, choice in enumerate(choices):
        _check_description(choice.get("name"), f"{at}.choices.{j}.name")
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            raise p.form_error(
                f"{at}.choices.{j}.value", "BASE_TYPE_BAD_LENGTH", "Must be 100 or fewer in length."
            )
        size += len(choice["name"]) + len(str(value))
    return size


class CommandsMixin:
    """Command half of :class:`~tests.fakediscord.FakeDiscord`.

    ``commands``: ``{guild_id or None: {(name, type): command payload}}`` as synced with
    ``PUT /applications/{app}/commands`` or ``.../guilds/{gid}/commands`` (ids kept across
    re-syncs of the same name and type). Names and descriptions are validated like Discord.
    """

    def _init_commands(self) -> None:
        self.commands: dict[int | None, dict[tuple[str, int], dict]] = {}

    def _add_command_routes(self, app: web.Application) -> None:
        r, a = app.router, API_PREFIX
        for base in ("/applications/{app}/commands", "/applications/{app}/guilds/{gid}/commands"):
            r.add_get(a + base, self._get_commands)
            r.add_put(a + base, self._put_commands)
            r.add_post(a + base, self._post_command)
            r.add_delete(a + base + "/{cmd}", self._delete_command)

    def _command_scope(self, request: web.Request) -> int | None:
        if int(request.match_info["app"]) != self.application_id:
            raise p.missing_access()
        gid = request.match_info.get("gid")
        if gid is not None:
            self._bot_guild(request)
        return int(gid) if gid is not None else None

    def _make_command(self, body: dict, scope: int | None, index: int) -> dict:
        kind = int(body.get("type", 1))
        name, description = body.get("name", ""), body.get("description", "")
        if kind == 1 and (not _NAME.match(name) or name != name.lower()):
            raise p.form_error(f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
        if kind == 1 and not 1 <= len(description) <= 100:
            raise p.form_error(
                f"{index}.description",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        size = (
            len(name)
            + len(description)
            + _check_options(body.get("options") or [], f"{index}.options")
        )
        if kind == 1 and size > MAX_COMMAND_SIZE:
            raise p.form_error(
                str(index),
                "APPLICATION_COMMAND_TOO_LARGE",
                f"Command exceeds maximum size ({MAX_COMMAND_SIZE})",
            )
        old = self.commands.get(scope, {}).get((name, kind))
        cmd = {
            "id": old["id"] if old else str(self.ids.next()),
            "application_id": str(self.application_id),
            "version": str(self.ids.next()),
            "type": kind,
            "name": name,
            "description": description,
            "options": body.get("options") or [],
            "nsfw": bool(body.get("nsfw", False)),
            "default_member_permissions": body.get("default_member_permissions"),
            "dm_permission": body.get("dm_permission", True),
            "integration_types": body.get("integration_types") or [0],
            "contexts": body.get("contexts"),
            "name_localizations": body.get("name_localizations"),
            "description_localizations": body.get("description_localizations"),
        }
        if scope is not None:
            cmd["guild_id"] = str(scope)
        return cmd

    async def _get_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        return p.json_response(list(self.commands.get(scope, {}).values()))

    async def _put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body, _ = await read_body(request)
        items = body.get("_list", [])
        new = [self._make_command(c, scope, i) for i, c in enumerate(items)]
        keys = [(c["name"], c["type"]) for c in new]
        if len(set(keys)) != len(keys):
            raise p.ApiError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "_errors": [
                        {
                            "code": "APPLICATION_COMMANDS_DUPLICATE_NAME",
                            "message": "Application command names must be unique",
                        }
                    ]
                },
            )
        self.commands[scope] = dict(zip(keys, new, strict=True))
        return p.json_response(new)

    async def _post_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body, _ = await read_body(request)
        cmd = self._make_command(body, scope, 0)
        self.commands.setdefault(scope, {})[(cmd["name"], cmd["type"])] = cmd
        return p.json_response(cmd, 201)

    async def _delete_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        table = self.commands.get(scope, {})
        for key, cmd in list(table.items()):
            if cmd["id"] == request.match_info["cmd"]:
                del table[key]
                return web.Response(status=204)
        raise p.unknown("application command")

    def _find_command(self, name: str, kind: int, guild_id: int | None) -> dict | None:
        for scope in (guild_id, None) if guild_id else (None,):
            cmd = self.commands.get(scope, {}).get((name, kind))
            if cmd is not None:
                return cmd
        return None
