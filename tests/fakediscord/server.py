"""FakeDiscord: a Discord-compatible server (REST + gateway + media) on 127.0.0.1 for tests.

Point the real discord.py client at it::

    server = FakeDiscord(); await server.start()
    discord.http.Route.BASE = server.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    await bot.login(server.token); task = asyncio.create_task(bot.connect())
    await server.wait_until_ready(); await bot.wait_until_ready()
    ...
    await bot.close(); await server.stop()

Media (attachments, the media proxy, external image proxies) is served over HTTPS at Discord's
own host names, which ``start()`` routes to this server for the process
(:mod:`tests.fakediscord.hostroutes`); a bot in a child process gets the same through
``child_environment()``.

World building (``add_user``, ``add_guild``, ``add_role``, ``add_member``, ``add_channel``,
``add_thread``, ``dm_channel``) and permission changes (``set_role_permissions``,
``set_everyone_permissions``, ``grant_bot``, ``delete_role``, ``set_member_roles``,
``set_overwrites``) are synchronous; events (``post_message``, ``forward_message``,
``edit_message``, ``react``, ``delete_message``, ``bulk_delete``, ``delete_channel``,
``remove_bot_from_guild``, ``archive_thread``, ``advance``, ``slash_command``,
``context_menu``) are async: they store the state, dispatch the gateway event to the connected
bot (if any) and return once the frame is written to its socket.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import hostroutes
from . import payloads as p
from .commands import CommandsMixin
from .events import EventsMixin
from .gateway import GatewayMixin
from .guildchanges import GuildChangesMixin
from .interactions import InteractionsMixin
from .media import MediaMixin
from .messages import MessagesMixin
from .ratelimits import RateLimits
from .reactions import ReactionsMixin
from .rest import API_PREFIX, NO_AUTH, PAYLOAD, RestMixin
from .threads import ThreadsMixin
from .world import World


class FakeDiscord(
    GatewayMixin,
    RestMixin,
    CommandsMixin,
    InteractionsMixin,
    EventsMixin,
    ReactionsMixin,
    ThreadsMixin,
    GuildChangesMixin,
    MessagesMixin,
    MediaMixin,
    World,
):
    """A fake Discord for end-to-end tests with the real discord.py client.

    Identity: ``token`` (``Authorization: Bot <token>``; other tokens get 401, a bad IDENTIFY
    4004), ``bot_user`` (payload), ``application_id`` (== the bot's user id), ``owner_id`` (the
    application owner, also the default owner of every guild).

    Observation: ``sent`` (every message the bot created/edited/sent as an interaction
    response or followup: the stored message payload plus ``kind``, ``allowed_mentions``,
    ``files`` [(filename, bytes)], ``ephemeral``, ``visible_embeds`` (what a member sees), and
    ``interaction_id`` for interaction messages), ``requests`` [(method, path relative to
    /api/v10)], ``media_requests`` [(host, path, status)], ``invalid_requests`` [(method, path,
    status)] (401, 403, 429), ``unknown_requests``, ``typing`` [channel ids], ``reactions``
    (the bot's own, by REST), ``faults_served``, ``server_errors`` (exceptions inside the
    fake; assert it stays empty), ``deprecated_requests`` (what Discord serves only for
    backwards compatibility; assert it stays empty), ``identifies`` / ``resumes``,
    ``gateway_paths``, ``interactions``, ``commands``, ``messages`` ({channel: {id: payload}}),
    ``permissions_for(channel_id, user_id)``, ``traffic`` (with ``record_traffic = True``:
    every REST response and gateway frame sent).

    Knobs: ``ratelimits.enabled`` (Discord's limits, on by default), ``enabled_intents``
    (privileged intents on in the "developer portal"; default all), ``heartbeat_interval_ms``,
    ``interaction_ack_timeout`` (3 s), ``preview_delay`` (1 s), ``closed_dms`` (users who accept
    no DMs), ``host_on_web(url, data)``, ``fail_next(...)``, ``stall_media(path_regex)``,
    ``expire_media_urls()``, ``disconnect(resumable=, code=)``, ``send_reconnect()`` (op 7),
    ``flush()`` (wait until dispatched frames are written), ``previews_settled()``.
    """

    def __init__(self) -> None:
        World.__init__(self)
        self._init_gateway()
        self._init_rest()
        self._init_commands()
        self._init_interactions()
        self._init_events()
        self._init_reactions()
        self._init_threads()
        self._init_media()
        self.ratelimits = RateLimits()
        self.record_traffic = False
        self.traffic: list[dict[str, Any]] = []
        self.sent: list[dict] = []
        self._consumed: list[bool] = []
        self._sent_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, media: bool = True) -> None:
        """Listen on 127.0.0.1: the API and gateway on one port, media (HTTPS) on another
        (unless `media` is False: no attachment is then fetched)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_get("/gateway-resume", self._gateway_handler)
        self._add_rest_routes(app)
        self._add_command_routes(app)
        self._add_interaction_routes(app)
        self._add_thread_routes(app)
        self._add_media_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._unknown_route)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{self.port}"
        if not media:
            return
        media_site = web.TCPSite(
            self._runner, "127.0.0.1", 0, ssl_context=hostroutes.server_context()
        )
        await media_site.start()
        self.media_port = media_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        hostroutes.route(self.media_port)

    async def stop(self) -> None:
        """Close gateway sockets and stop listening (close the bot first)."""
        await self._cancel_previews()
        await self._close_all_gateways()
        if self.media_port:
            hostroutes.unroute(self.media_port)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def child_environment(self) -> dict[str, str]:
        """Environment for ``python -m tests.fakediscord.child`` so that a bot in a child process
        reaches this server's media at Discord's host names too."""
        return hostroutes.child_environment(self.media_port)

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway-resume"

    @property
    def invalid_requests(self) -> list[tuple[str, str, int]]:
        return self.ratelimits.invalid_requests

    # --- every request ------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path.startswith("/gateway") and not request.secure:
            return await handler(request)
        if self.is_media_request(request):
            fault = self._take_fault(request.method, path)
            if fault is not None:
                self.media_requests.append((request.host, path, fault.status))
                return fault
            return await handler(request)
        if request.secure:  # the API is not served at the media hosts
            return await self._unknown_route(request)
        rel = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
        self.requests.append((request.method, rel))
        response = await self._answer(request, handler, rel)
        self.ratelimits.record(request.method, rel, response.status, response.headers)  # type: ignore[arg-type]
        if self.record_traffic:
            self._record_response(request, rel, response)
        return response

    async def _answer(self, request: web.Request, handler: Any, rel: str) -> web.StreamResponse:
        """An injected failure first (served instead of the request: not counted), then rate
        limits (refused requests count too), authentication and the route; every answer
        carries its bucket's headers."""
        fault = self._take_fault(request.method, rel)
        if fault is not None:
            if fault.status != 429:  # (an injected 429 carries its own bucket's headers)
                fault.headers.update(self.ratelimits.peek(request.method, rel))
            return fault
        headers, refusal = self.ratelimits.take(request.method, rel)
        if refusal is not None:
            return refusal
        needs_auth = request.path.startswith(API_PREFIX) and not NO_AUTH.match(rel)
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            response: web.StreamResponse = p.json_response(
                {"message": "401: Unauthorized", "code": 0}, 401
            )
        else:
            try:
                response = await handler(request)
            except p.ApiError as exc:
                response = exc.response()
            except web.HTTPException:
                raise
            except Exception as exc:  # a bug in the fake: fail the call fast (a 5xx is retried)
                self.server_errors.append(f"{request.method} {rel}: {exc!r}")
                body = {"message": f"fake server error: {exc!r}", "code": 0}
                response = p.json_response(body, 400)
        response.headers.update(headers)
        return response

    def _record_response(
        self, request: web.Request, rel: str, response: web.StreamResponse
    ) -> None:
        raw = getattr(response, "body", None)
        body = None
        if isinstance(raw, bytes) and response.content_type == "application/json":
            body = json.loads(raw)
        self.traffic.append(
            {
                "kind": "rest",
                "method": request.method,
                "path": rel,
                "request": request.get(PAYLOAD),
                "multipart": request.content_type.startswith("multipart/"),
                "status": response.status,
                "headers": dict(response.headers),
                "body": body,
            }
        )

    def _frame_sent(self, frame: str) -> None:
        if self.record_traffic:
            self.traffic.append({"kind": "gateway", "frame": json.loads(frame)})

    # --- the application ------------------------------------------------------------------------

    @property
    def application_flags(self) -> int:
        flags = 1 << 23  # APPLICATION_COMMAND_BADGE
        for intent, flag in (
            (p.INTENT_GUILD_PRESENCES, 1 << 13),
            (p.INTENT_GUILD_MEMBERS, 1 << 15),
            (p.INTENT_MESSAGE_CONTENT, 1 << 19),
        ):
            if self.enabled_intents & intent:
                flags |= flag  # the *_LIMITED flags of an unverified bot
        return flags

    def application_info(self) -> dict:
        """GET /oauth2/applications/@me."""
        return {
            "id": str(self.application_id), "name": self.bot_user["username"], "icon": None,
            "description": "", "type": None, "bot_public": True,
            "bot_require_code_grant": False, "verify_key": "0" * 64, "team": None,
            "owner": self.users[self.owner_id], "bot": self.bot_user,
            "flags": self.application_flags, "flags_new": str(self.application_flags),
            "approximate_user_install_count": 0, "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": ["bot", "applications.commands"],
            "rpc_origins": [], "redirect_uris": [], "tags": [], "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "install_params": {"scopes": ["bot", "applications.commands"],
                               "permissions": str(p.INVITE_PERMISSIONS)},
            "integration_types_config": {"0": {}}, "approximate_guild_count": len(self.guilds),
        }  # fmt: skip

    # --- observation ---------------------------------------------------------------------------

    def _append_sent(self, entry: dict) -> None:
        self.sent.append(entry)
        self._consumed.append(False)
        self._sent_changed.set()

    async def wait_for_sent(
        self,
        predicate: Callable[[dict], bool] | None = None,
        *,
        channel_id: int | None = None,
        timeout: float = 10.0,
    ) -> dict:
        """Return the oldest not-yet-consumed entry of ``sent`` that matches, and consume it.

        Each entry is returned by at most one ``wait_for_sent`` call; entries appended before the
        call count too (so nothing is missed between sending and waiting). Waits up to
        ``timeout`` seconds for one to appear (TimeoutError listing what was sent).
        """

        def matches(entry: dict) -> bool:
            if channel_id is not None and int(entry["channel_id"]) != channel_id:
                return False
            return predicate is None or bool(predicate(entry))

        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._sent_changed.clear()
                    for i, entry in enumerate(self.sent):
                        if not self._consumed[i] and matches(entry):
                            self._consumed[i] = True
                            return entry
                    await self._sent_changed.wait()
        except TimeoutError:
            seen = [(e["kind"], e["channel_id"], e["content"][:60]) for e in self.sent]
            raise TimeoutError(f"nothing matching sent within {timeout}s; sent: {seen}") from None

    def history_payloads(self, channel_id: int) -> list[dict]:
        """Stored messages of a channel, oldest first (deep copies)."""
        return [copy.deepcopy(m) for _, m in sorted(self.messages[channel_id].items())]

    def message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        """The stored payload of a message (live dict)."""
        return self.messages[channel_id][message_id]
