"""Simulated INTERACTION_CREATE (slash commands, message context menus), callbacks, followups.

Answers are messages as Discord makes them (message.mdx, "Message Interaction Metadata Object";
"Context Menu Command messages"): type 20 (23 for a context menu), ``application_id``,
``webhook_id`` equal to the application, ``interaction_metadata`` (``original_response_message_id``
on followups, ``target_message_id`` for a message command), stored and dispatched unless
ephemeral. The callback must come within 3 s; the token then lives 15 minutes on the server's
clock, after which the webhook routes answer 401 with code 50027 (receiving-and-responding.mdx,
"Interaction Callback"; opcodes-and-status-codes.mdx).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from . import payloads as p
from .interaction import Interaction
from .limits import validate_message_body
from .offered import BOT_DM, GUILD, NotOffered, check_offered, check_options
from .rest import API_PREFIX, read_body


class InteractionsMixin:
    """Interaction half of :class:`~tests.fakediscord.FakeDiscord`.

    ``interactions``: ``{token: Interaction}``. ``interaction_ack_timeout``: seconds within
    which the callback must arrive (3.0, like Discord; later -> 404 Unknown interaction).
    """

    def _init_interactions(self) -> None:
        self.interactions: dict[str, Interaction] = {}
        self.interaction_ack_timeout = 3.0
        # Requests Discord serves only for backwards compatibility, with why (assert it stays
        # empty): a followup that fills a deferral's loading message.
        self.deprecated_requests: list[str] = []

    def _add_interaction_routes(self, app: web.Application) -> None:
        r, a = app.router, API_PREFIX
        r.add_post(a + "/interactions/{iid}/{token}/callback", self._callback)
        r.add_post(a + "/webhooks/{app}/{token}", self._followup)
        r.add_get(a + "/webhooks/{app}/{token}/messages/{mid}", self._get_webhook_message)
        r.add_patch(a + "/webhooks/{app}/{token}/messages/{mid}", self._patch_webhook_message)
        r.add_delete(a + "/webhooks/{app}/{token}/messages/{mid}", self._delete_webhook_message)

    # --- simulated interactions -----------------------------------------------------------------

    async def _start_interaction(self, channel_id: int, user_id: int, data: dict) -> Interaction:
        channel = self.channels[channel_id]
        guild = self.guild_of(channel_id)
        if guild is not None and user_id not in guild.members:
            raise ValueError(f"user {user_id} is not a member of guild {guild.id}")
        iid = self.ids.next()
        perms = self.permissions_for(channel_id, user_id)
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.application_id), "type": 2,
            "data": data, "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(32), "version": 1,
            "locale": "en-US", "entitlements": [], "attachment_size_limit": p.MAX_FILE_SIZE,
            "channel_id": str(channel_id), "channel": dict(channel, permissions=str(perms)),
            "app_permissions": str(self.permissions_for(channel_id, self.bot_id)),
        }  # fmt: skip
        if guild is not None:
            member = self.member_payload(guild.id, user_id)
            member["permissions"] = str(perms)
            payload.update(
                guild_id=str(guild.id),
                member=member,
                guild_locale="en-US",
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                context=0,
                authorizing_integration_owners={"0": str(guild.id)},
            )
        else:
            payload.update(
                user=self.users[user_id],
                context=1,
                # GUILD_INSTALL's value in a DM with the bot is "0" (receiving-and-
                # responding.mdx, "Authorizing Integration Owners Object").
                authorizing_integration_owners={"0": "0"},
            )
        it = Interaction(payload, channel_id, user_id, self.clock.now())
        self.interactions[it.token] = it
        self._dispatch("INTERACTION_CREATE", payload)
        await self.flush()
        return it

    def _option(self, channel_id: int, name: str, kind: int, value: Any, resolved: dict) -> dict:
        guild = self.guild_of(channel_id)
        if kind == 11:
            filename, data, ctype = value
            att = self.store_attachment(channel_id, filename, data, ctype, ephemeral=True)
            resolved.setdefault("attachments", {})[att["id"]] = att
            value = att["id"]
        elif kind in (6, 9) and int(value) in self.users:
            uid = int(value)
            resolved.setdefault("users", {})[str(uid)] = self.users[uid]
            if guild is not None and uid in guild.members:
                member = self.member_payload(guild.id, uid, with_user=False)
                member["permissions"] = str(self.permissions_for(channel_id, uid))
                resolved.setdefault("members", {})[str(uid)] = member
            value = str(uid)
        elif kind in (8, 9) and guild is not None and int(value) in guild.roles:
            resolved.setdefault("roles", {})[str(value)] = guild.roles[int(value)]
            value = str(value)
        elif kind == 7:
            ch = self.channels[int(value)]
            keys = ("id", "name", "type", "parent_id", "thread_metadata")
            data = {k: ch[k] for k in keys if k in ch}
            data["permissions"] = str(self.permissions_for(int(value), self.bot_id))
            resolved.setdefault("channels", {})[ch["id"]] = data
            value = ch["id"]
        else:
            value = {4: int, 10: float, 5: bool}.get(kind, str)(value)
        return {"name": name, "type": kind, "value": value}

    async def slash_command(
        self,
        channel_id: int,
        user_id: int,
        name: str,
        options: dict[str, object] | None = None,
        *,
        attachments: Sequence[tuple[str, bytes, str | None]] = (),
    ) -> Interaction:
        """A user runs ``/name`` (``"group sub"`` for subcommands) in a channel.

        ``options`` map option names to values: str/int/float/bool by value, a user/channel/role
        id for those option types (resolved payloads are added), or a ``(filename, bytes,
        content_type)`` tuple for an attachment option. ``attachments`` fill the command's
        attachment options in declaration order. Only what a Discord client would send: a
        synced command offered there to this member, with its own options (tests.fakediscord.
        offered; NotOffered otherwise).
        """
        guild = self.guild_of(channel_id)
        parts = name.split()
        found = self._find_command(parts[0], 1, guild.id if guild else None)
        cmd = self._offered(found, f"/{name}", channel_id, user_id)
        data: dict[str, Any] = {"id": cmd["id"], "name": parts[0], "type": 1}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        defs: list[dict] = cmd["options"]
        container = data
        for sub in parts[1:]:
            d = next((o for o in defs if o["name"] == sub and o["type"] in (1, 2)), None)
            if d is None:
                raise NotOffered(f"/{name}: /{parts[0]} has no subcommand {sub!r}")
            opt = {"name": sub, "type": d["type"], "options": []}
            container["options"] = [opt]
            container, defs = opt, d.get("options") or []
        values = dict(options or {})
        pending = list(attachments)
        for d in defs:
            if d["type"] == 11 and d["name"] not in values and pending:
                values[d["name"]] = pending.pop(0)
        if pending:
            raise ValueError(
                f"no free attachment option for {len(pending)} attachment(s) on /{name}"
            )
        check_options(defs, values, f"/{name}")
        resolved: dict[str, dict] = {}
        types = {d["name"]: d["type"] for d in defs}
        opts = [self._option(channel_id, k, types[k], v, resolved) for k, v in values.items()]
        container["options"] = opts
        if resolved:
            data["resolved"] = resolved
        return await self._start_interaction(channel_id, user_id, data)

    def _offered(self, cmd: dict | None, label: str, channel_id: int, user_id: int) -> dict:
        guild = self.guild_of(channel_id)
        perms = self.permissions_for(channel_id, user_id) if guild is not None else None
        return check_offered(cmd, label, GUILD if guild is not None else BOT_DM, perms)

    async def context_menu(
        self, channel_id: int, user_id: int, name: str, message_id: int
    ) -> Interaction:
        """A user runs the message context menu ``name`` on a stored message.

        ``resolved.messages`` carries the full target message, attachments and content included
        even without the message content intent.
        """
        guild = self.guild_of(channel_id)
        target = self.messages[channel_id].get(message_id)
        if target is None:
            raise ValueError(f"no message {message_id} in channel {channel_id}")
        found = self._find_command(name, 3, guild.id if guild else None)
        cmd = self._offered(found, f"menu {name!r}", channel_id, user_id)
        data: dict[str, Any] = {
            "id": cmd["id"], "name": name, "type": 3,
            "target_id": str(message_id),
            "resolved": {"messages": {str(message_id): copy.deepcopy(self.refresh_urls(target))}},
        }  # fmt: skip
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return await self._start_interaction(channel_id, user_id, data)

    # --- responses ------------------------------------------------------------------------------

    def _interaction_message(
        self,
        it: Interaction,
        body: dict,
        files: dict,
        *,
        ephemeral: bool,
        loading: bool = False,
        followup: bool = False,
    ) -> dict:
        user = self.users[it.user_id]
        meta: dict[str, Any] = {
            "id": str(it.id),
            "type": 2,
            "user": user,
            "authorizing_integration_owners": it.payload["authorizing_integration_owners"],
        }
        if followup and it.original is not None:
            meta["original_response_message_id"] = it.original["id"]
        extra: dict[str, Any] = {}
        if it.command_type == 3:
            target = int(it.payload["data"]["target_id"])
            meta["target_message_id"] = str(target)
            extra = self.reference_to(it.channel_id, target)
        msg = self._bot_message(
            it.channel_id,
            body,
            files,
            check_embeds=False,
            ephemeral=ephemeral,
            msg_type=p.CHAT_INPUT_COMMAND if it.command_type == 1 else p.CONTEXT_MENU_COMMAND,
            webhook_id=self.application_id,
            application_id=str(self.application_id),
            interaction_metadata=meta,
            interaction={"id": str(it.id), "type": 2, "name": it.name, "user": user},
            **extra,
        )
        msg["flags"] |= (p.EPHEMERAL if ephemeral else 0) | (p.LOADING if loading else 0)
        if not ephemeral:
            self.store_message(msg)
        self._dispatch_message("MESSAGE_CREATE", msg)
        return msg

    def _record_for(self, it: Interaction, msg: dict, kind: str, body: dict, files: dict) -> None:
        entry = self._record_sent(
            msg, kind, body, files, ephemeral=bool(msg["flags"] & p.EPHEMERAL), interaction_id=it.id
        )
        it.entries.append(entry)
        it._notify()

    async def _callback(self, request: web.Request) -> web.Response:
        it = self.interactions.get(request.match_info["token"])
        if it is None or it.id != int(request.match_info["iid"]):
            raise p.unknown("interaction")
        body, files = await read_body(request)
        if it.acknowledged:
            raise p.ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.clock.now() - it.created > self.interaction_ack_timeout:
            raise p.unknown("interaction")
        kind, data = body.get("type"), body.get("data") or {}
        ephemeral = bool(int(data.get("flags") or 0) & p.EPHEMERAL)
        resource: dict[str, Any] = {"type": kind}
        msg = None
        if kind == 4:
            validate_message_body(data, len(files))
            msg = self._interaction_message(it, data, files, ephemeral=ephemeral)
        elif kind == 5:
            msg = self._interaction_message(it, {}, {}, ephemeral=ephemeral, loading=True)
        elif kind == 9:
            it.modal = data
        elif kind != 8:
            raise p.form_error(
                "type",
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Callback type {kind} is not valid for this interaction",
            )
        it.callbacks.append(body)
        it.response_type = kind
        if msg is not None:
            it.original = resource["message"] = msg
            if kind == 4:
                self._record_for(it, msg, "interaction_response", data, files)
        it._notify()
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        info = {
            "id": str(it.id),
            "type": 2,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": ephemeral,
        }
        if msg is not None:
            info["response_message_id"] = msg["id"]
        answer: dict[str, Any] = {"interaction": info}
        if kind == 4:  # the spec's resource types: only a message created (4) applies here
            answer["resource"] = resource
        return p.json_response(answer)

    def _webhook_interaction(self, request: web.Request) -> Interaction:
        it = self.interactions.get(request.match_info["token"])
        if it is None or int(request.match_info["app"]) != self.application_id:
            raise p.unknown("Webhook")
        if it.expired(self.clock.now()):
            raise p.ApiError(401, 50027, "Invalid Webhook Token")
        return it

    def _webhook_message(self, it: Interaction, request: web.Request) -> dict:
        mid = request.match_info["mid"]
        if mid == "@original":
            original = self._live_original(it)
            if original is None:
                raise p.unknown("Message")
            return original
        for msg in it.followups:
            if msg["id"] == mid:
                return msg
        raise p.unknown("Message")

    def _live_original(self, it: Interaction) -> dict | None:
        """The original response, unless it is a public one deleted in the channel since (by a
        moderator, say): then it is gone for the interaction's webhook too."""
        original = it.original
        if original is None or original["flags"] & p.EPHEMERAL:
            return original
        return original if int(original["id"]) in self.messages.get(it.channel_id, {}) else None

    async def _followup(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        if not it.acknowledged:
            raise p.unknown("Webhook")
        body, files = await read_body(request)
        validate_message_body(body, len(files))
        original = self._live_original(it)
        if original is not None and original["flags"] & p.LOADING:
            # the first followup after a defer fills the deferred message, a behaviour kept
            # for backwards compatibility and deprecated (receiving-and-responding.mdx,
            # "Create Followup Message"): Edit Original Interaction Response is the way
            self.deprecated_requests.append(f"POST {request.path}: a followup filled a deferral")
            self._apply_edit(original, body, files)
            original["flags"] &= ~p.LOADING
            original["edited_timestamp"] = None
            msg = original
            self._dispatch_message("MESSAGE_UPDATE", msg)
        else:
            ephemeral = bool(int(body.get("flags") or 0) & p.EPHEMERAL)
            msg = self._interaction_message(it, body, files, ephemeral=ephemeral, followup=True)
        it.followups.append(msg)
        self._record_for(it, msg, "followup", body, files)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return p.json_response(msg)
        return web.Response(status=204)

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        return p.json_response(self._webhook_message(it, request))

    async def _patch_webhook_message(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        msg = self._webhook_message(it, request)
        body, files = await read_body(request)
        self._apply_edit(msg, body, files)
        msg["flags"] &= ~p.LOADING
        self._dispatch_message("MESSAGE_UPDATE", msg)
        kind = "edit_original" if msg is it.original else "edit"
        self._record_for(it, msg, kind, body, files)
        return p.json_response(msg)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        it = self._webhook_interaction(request)
        msg = self._webhook_message(it, request)
        if not msg["flags"] & p.EPHEMERAL:
            await self.delete_message(it.channel_id, int(msg["id"]))
        if msg is it.original:
            it.original = None
        else:
            it.followups.remove(msg)
        it._notify()
        return web.Response(status=204)
