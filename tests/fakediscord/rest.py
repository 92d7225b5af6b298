"""The REST API (``/api/v10/...``): routes, permission checks and injected failures.

Permission checks follow Discord: 50001 Missing Access when the bot cannot view a channel,
50013 Missing Permissions when it cannot send/attach/reply, 10003/10008/... for unknown objects,
50007 when a member accepts no direct messages. Message bodies are validated as Discord does
(:mod:`tests.fakediscord.limits`). The middleware that authenticates, rate-limits and records
requests is in :mod:`tests.fakediscord.server`.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from aiohttp import web

from . import payloads as p
from .limits import validate_message_body

API_PREFIX = "/api/v10"
NO_AUTH = re.compile(r"^/(interactions/\d+/[^/]+/callback|webhooks/\d+/[^/]+)")


# What the client sent (a multipart request's payload_json), for the recorded traffic.
PAYLOAD = web.RequestKey("payload", object)


async def read_body(request: web.Request) -> tuple[dict, dict[int, tuple[str, bytes]]]:
    """JSON body, or multipart ``payload_json`` + ``files[n]``; returns (payload, {n: file})."""
    if request.content_type.startswith("multipart/"):
        payload: dict = {}
        files: dict[int, tuple[str, bytes]] = {}
        reader = await request.multipart()
        async for part in reader:
            name = getattr(part, "name", None) or ""
            if name == "payload_json":
                payload = json.loads(await part.text())  # type: ignore[union-attr]
            elif name.startswith("files[") or name == "file":
                index = int(name[6:-1]) if name != "file" else 0
                files[index] = (part.filename or "file", bytes(await part.read()))  # type: ignore[union-attr]
        request[PAYLOAD] = payload
        return payload, files
    if request.body_exists:
        data = await request.json()
        request[PAYLOAD] = data
        return (data if isinstance(data, dict) else {"_list": data}), {}
    return {}, {}


class RestMixin:
    """REST half of :class:`~tests.fakediscord.FakeDiscord`."""

    def _init_rest(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.unknown_requests: list[tuple[str, str]] = []
        self.typing: list[int] = []
        self.reactions: list[tuple[int, int, str]] = []
        self.faults_served: list[tuple[str, str, int]] = []
        self.server_errors: list[str] = []  # bugs in the fake itself (answered 400)
        self._faults: list[list[Any]] = []

    def _add_rest_routes(self, app: web.Application) -> None:
        r = app.router
        a = API_PREFIX
        r.add_get(a + "/users/@me", self._get_me)
        r.add_get(a + "/oauth2/applications/@me", self._get_app)
        r.add_get(a + "/applications/@me", self._get_app)
        r.add_get(a + "/gateway", self._get_gateway)
        r.add_get(a + "/gateway/bot", self._get_gateway)
        r.add_post(a + "/users/@me/channels", self._create_dm)
        r.add_get(a + "/users/{uid}", self._get_user)
        r.add_get(a + "/channels/{cid}", self._get_channel)
        r.add_post(a + "/channels/{cid}/typing", self._post_typing)
        r.add_get(a + "/channels/{cid}/messages", self._get_messages)
        r.add_post(a + "/channels/{cid}/messages", self._post_message)
        r.add_post(a + "/channels/{cid}/messages/bulk-delete", self._bulk_delete_rest)
        r.add_get(a + "/channels/{cid}/messages/{mid}", self._get_message)
        r.add_patch(a + "/channels/{cid}/messages/{mid}", self._patch_message)
        r.add_delete(a + "/channels/{cid}/messages/{mid}", self._delete_message_rest)
        r.add_put(a + "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self._put_reaction)
        r.add_get(a + "/guilds/{gid}", self._get_guild)
        r.add_get(a + "/guilds/{gid}/channels", self._get_guild_channels)
        r.add_get(a + "/guilds/{gid}/roles", self._get_roles)
        r.add_get(a + "/guilds/{gid}/members", self._get_members)
        r.add_get(a + "/guilds/{gid}/members/{uid}", self._get_member)

    async def _unknown_route(self, request: web.Request) -> web.Response:
        path = request.path
        rel = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
        self.unknown_requests.append((request.method, rel))
        return p.json_response({"message": "404: Not Found", "code": 0}, 404)

    # --- injected failures ---------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        count: int = 1,
        retry_after: float = 0.05,
    ) -> None:
        """Answer the next ``count`` requests matching with ``status`` instead of serving them.

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` is searched (``re.search``) in
        the path relative to ``/api/v10`` (e.g. ``r"^/channels/\\d+/messages$"``; webhook and
        interaction callback paths too), or in a media path (``/attachments/...`` on the CDN).
        A 429 carries Discord's rate-limit headers, ``Via`` and the JSON body with
        ``retry_after``; other statuses a JSON error body. Note discord.py sleeps ``1 + 2*tries``
        s before retrying a 5xx.
        """
        self._faults.append([method.upper(), re.compile(path_regex), status, count, retry_after])

    def clear_faults(self) -> None:
        """Stop answering with the faults still to come (the end of an outage)."""
        self._faults.clear()

    def _take_fault(self, method: str, rel: str) -> web.Response | None:
        for fault in self._faults:
            f_method, regex, status, remaining, retry_after = fault
            if remaining > 0 and f_method in ("*", method) and regex.search(rel):
                fault[3] -= 1
                self.faults_served.append((method, rel, status))
                if status == 429:
                    headers = {
                        "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                        "X-RateLimit-Bucket": "fakebucket", "X-RateLimit-Scope": "user",
                        "Retry-After": str(max(1, math.ceil(retry_after))), "Via": "1.1 google",
                    }  # fmt: skip
                    body = {
                        "message": "You are being rate limited.",
                        "retry_after": retry_after,
                        "global": False,
                        "code": 0,
                    }
                    return p.json_response(body, 429, headers)
                return p.json_response(
                    {"message": f"{status}: Injected failure", "code": 0}, status
                )
        return None

    # --- helpers ---------------------------------------------------------------------------

    def _channel(self, request: web.Request) -> int:
        cid = int(request.match_info["cid"])
        if cid not in self.channels:
            raise p.unknown("Channel")
        return cid

    def _require(self, cid: int, perm: int) -> None:
        perms = self.permissions_for(cid, self.bot_id)
        if not perms & p.VIEW_CHANNEL:
            raise p.missing_access()
        if perms & perm != perm:
            raise p.missing_permissions()

    def _require_readable(self, cid: int, perm: int) -> None:
        """Reading messages: in the text chat of a voice or stage channel, Connect as well as
        View Channel, or Discord answers Missing Access (message.mdx, "Get Channel Messages"
        and "Get Channel Message")."""
        voice = self.channels[cid]["type"] in p.VOICE_BASED
        if voice and not self.permissions_for(cid, self.bot_id) & p.CONNECT:
            raise p.missing_access()
        self._require(cid, perm)

    def _stored(self, cid: int, request: web.Request) -> dict:
        msg = self.messages[cid].get(int(request.match_info["mid"]))
        if msg is None:
            raise p.unknown("Message")
        return msg

    def _rest_view(self, msg: dict) -> dict:
        """What GET returns: URLs that work; without the message content intent, content is
        blank (except where gateway.mdx, "Message Content Intent", keeps it)."""
        self.refresh_urls(msg)
        if self.enabled_intents & p.INTENT_MESSAGE_CONTENT:
            return msg
        return msg if self.content_visible_without_intent(msg) else p.strip_content(msg)

    def _bot_guild(self, request: web.Request) -> int:
        gid = int(request.match_info["gid"])
        guild = self.guilds.get(gid)
        if guild is None or self.bot_id not in guild.members:
            raise p.missing_access() if guild else p.unknown("Guild")
        return gid

    # --- handlers ----------------------------------------------------------------------------

    async def _get_me(self, request: web.Request) -> web.Response:
        return p.json_response(self.current_user())

    async def _get_app(self, request: web.Request) -> web.Response:
        return p.json_response(self.application_info())

    async def _get_gateway(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return p.json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _create_dm(self, request: web.Request) -> web.Response:
        body, _ = await read_body(request)
        uid = int(body.get("recipient_id", 0))
        if uid not in self.users:
            raise p.unknown("User")
        return p.json_response(self.channels[self.dm_channel(uid)])

    async def _get_user(self, request: web.Request) -> web.Response:
        uid = int(request.match_info["uid"])
        if uid not in self.users:
            raise p.unknown("User")
        return p.json_response(self.users[uid])

    async def _get_channel(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, 0)
        if self.channels[cid]["type"] in p.THREAD_TYPES:
            return p.json_response(self.thread_view(cid))
        return p.json_response(self.channels[cid])

    async def _post_typing(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, p.VIEW_CHANNEL)
        self.typing.append(cid)
        return web.Response(status=204)

    async def _get_messages(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require_readable(cid, 0)
        q = request.query
        limit = int(q.get("limit", 50))
        if not 1 <= limit <= 100:
            raise p.form_error("limit", "NUMBER_TYPE_MAX", "int value should be <= 100 and >= 1.")
        if not self.permissions_for(cid, self.bot_id) & p.READ_MESSAGE_HISTORY:
            return p.json_response([])
        opt = {k: int(q[k]) for k in ("before", "after", "around") if k in q}
        return p.json_response([self._rest_view(m) for m in self.history(cid, limit, **opt)])

    async def _get_message(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require_readable(cid, p.READ_MESSAGE_HISTORY)  # message.mdx, "Get Channel Message"
        return p.json_response(self._rest_view(self._stored(cid, request)))

    async def _post_message(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        body, files = await read_body(request)
        recipient = self.dm_recipient(cid)
        if recipient is not None and recipient in self.closed_dms:
            # A member who blocks the bot or takes no DMs from server members
            # (opcodes-and-status-codes.mdx, "JSON Error Codes": 50007).
            raise p.ApiError(403, 50007, "Cannot send messages to this user")
        thread = self.channels[cid]["type"] in p.THREAD_TYPES
        self._require(cid, p.SEND_MESSAGES_IN_THREADS if thread else p.SEND_MESSAGES)
        if files:
            self._require(cid, p.ATTACH_FILES)
        validate_message_body(body, len(files))
        ref = body.get("message_reference") or {}
        extra: dict[str, Any] = {}
        reply_to = None
        if ref and int(ref.get("type", 0)) == 1:
            extra = self._forward_reference(ref)
        elif ref:
            self._require(cid, p.READ_MESSAGE_HISTORY)
            mid = int(ref["message_id"])
            same_channel = int(ref.get("channel_id") or cid) == cid
            if same_channel and mid in self.messages[cid]:
                reply_to = mid
            elif ref.get("fail_if_not_exists", True):
                raise p.form_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        self._before_post(cid, self.bot_id)
        msg = self._bot_message(cid, body, files, reply_to=reply_to, **extra)
        if extra:
            msg["flags"] |= p.HAS_SNAPSHOT
        self.store_message(msg)
        self._record_sent(msg, "message", body, files)
        self._dispatch_message("MESSAGE_CREATE", msg)
        return p.json_response(msg)

    def _forward_reference(self, ref: dict) -> dict[str, Any]:
        source_channel = int(ref["channel_id"])
        if source_channel not in self.channels:
            raise p.unknown("Channel")
        if not self.can_see(source_channel, self.bot_id):
            raise p.missing_access()
        if int(ref["message_id"]) not in self.messages[source_channel]:
            raise p.unknown("Message")
        return self.forward_of(source_channel, int(ref["message_id"]))

    async def _patch_message(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, 0)
        msg = self._stored(cid, request)
        if int(msg["author"]["id"]) != self.bot_id:
            raise p.ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._refuse_if_archived(cid)
        self._refuse_if_locked(cid, self.bot_id)
        body, files = await read_body(request)
        self._apply_edit(msg, body, files)
        self._record_sent(msg, "edit", body, files)
        self._dispatch_message("MESSAGE_UPDATE", msg)
        return p.json_response(msg)

    async def _delete_message_rest(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        # Without View Channel nothing else in it is allowed (permissions.mdx, "Implicit
        # Permissions"): refused as Missing Access (50001), not unknown.
        self._require(cid, 0)
        msg = self._stored(cid, request)
        if int(msg["author"]["id"]) != self.bot_id:
            self._require(cid, p.MANAGE_MESSAGES)
        self._refuse_if_locked(cid, self.bot_id, archived_only=True)
        await self.delete_message(cid, int(msg["id"]))
        return web.Response(status=204)

    async def _bulk_delete_rest(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, p.MANAGE_MESSAGES)
        body, _ = await read_body(request)
        ids = [int(i) for i in body.get("messages", [])]
        if not 2 <= len(ids) <= 100:
            raise p.form_error("messages", "BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100.")
        await self.bulk_delete(cid, [i for i in ids if i in self.messages[cid]])
        return web.Response(status=204)

    async def _put_reaction(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, p.READ_MESSAGE_HISTORY | p.ADD_REACTIONS)
        msg = self._stored(cid, request)
        self.reactions.append((cid, int(msg["id"]), request.match_info["emoji"]))
        return web.Response(status=204)

    async def _get_guild(self, request: web.Request) -> web.Response:
        gid = self._bot_guild(request)
        data = self.guild_payload(gid, all_members=False)
        for key in (
            "members",
            "channels",
            "threads",
            "voice_states",
            "presences",
            "joined_at",
            "large",
            "unavailable",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
        ):
            data.pop(key, None)
        data["approximate_member_count"] = data.pop("member_count")
        data["approximate_presence_count"] = 0
        return p.json_response(data)

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        gid = self._bot_guild(request)
        ids = self.guilds[gid].channel_ids
        return p.json_response(
            [self.channels[c] for c in ids if self.channels[c]["type"] not in p.THREAD_TYPES]
        )

    async def _get_roles(self, request: web.Request) -> web.Response:
        return p.json_response(list(self.guilds[self._bot_guild(request)].roles.values()))

    async def _get_members(self, request: web.Request) -> web.Response:
        """List Guild Members needs the GUILD_MEMBERS intent enabled (gateway.mdx, "HTTP
        Restrictions")."""
        gid = self._bot_guild(request)
        if not self.enabled_intents & p.INTENT_GUILD_MEMBERS:
            raise p.missing_access()
        limit = int(request.query.get("limit", 1))
        after = int(request.query.get("after", 0))
        ids = sorted(u for u in self.guilds[gid].members if u > after)[:limit]
        return p.json_response([self.member_payload(gid, u) for u in ids])

    async def _get_member(self, request: web.Request) -> web.Response:
        gid = self._bot_guild(request)
        uid = int(request.match_info["uid"])
        if uid not in self.guilds[gid].members:
            raise p.unknown("Member")
        return p.json_response(self.member_payload(gid, uid))
