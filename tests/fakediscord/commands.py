"""Application command store: the bot's command sync endpoints (global and per guild)."""

from __future__ import annotations

import re

from aiohttp import web

from . import payloads as p
from .rest import API_PREFIX, read_body

_NAME = re.compile(r"^[-_\w]{1,32}$")


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
        if len(body.get("options") or []) > 25:
            raise p.form_error(f"{index}.options", "BASE_TYPE_MAX_LENGTH", "Too many options.")
        old = self.commands.get(scope, {}).get((name, kind))
        cmd = {
            "id": old["id"] if old else str(self.ids.next()),
            "application_id": str(self.application_id), "version": str(self.ids.next()),
            "type": kind, "name": name, "description": description,
            "options": body.get("options") or [], "nsfw": bool(body.get("nsfw", False)),
            "default_member_permissions": body.get("default_member_permissions"),
            "dm_permission": body.get("dm_permission", True),
            "integration_types": body.get("integration_types") or [0],
            "contexts": body.get("contexts"),
            "name_localizations": body.get("name_localizations"),
            "description_localizations": body.get("description_localizations"),
        }  # fmt: skip
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
