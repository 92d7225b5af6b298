"""FakeDiscord: a small Discord-compatible server (REST + gateway) on 127.0.0.1 for tests.

Point the real discord.py client at it::

    server = FakeDiscord(); await server.start()
    discord.http.Route.BASE = server.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    await bot.login(server.token); task = asyncio.create_task(bot.connect())
    await server.wait_until_ready(); await bot.wait_until_ready()
    ...
    await bot.close(); await server.stop()

World building (``add_user``, ``add_guild``, ``add_role``, ``add_member``, ``add_channel``,
``add_thread``, ``dm_channel``, ``set_everyone_permissions``, ``set_role_permissions``) is
synchronous; events (``post_message``, ``edit_message``, ``delete_message``, ``bulk_delete``,
``delete_channel``, ``remove_bot_from_guild``, ``slash_command``, ``context_menu``) are async:
they store the state, dispatch the gateway event to the connected bot (if any) and return once
the frame is written to its socket. While no bot is connected they only store.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from . import payloads as p
from .commands import CommandsMixin
from .gateway import GatewayMixin
from .interactions import InteractionsMixin
from .messages import MessagesMixin
from .rest import API_PREFIX, RestMixin
from .world import World


class FakeDiscord(GatewayMixin, RestMixin, CommandsMixin, InteractionsMixin, MessagesMixin, World):
    """A fake Discord for end-to-end tests with the real discord.py client.

    Identity: ``token`` (``Authorization: Bot <token>``; other tokens get 401, a bad IDENTIFY
    4004), ``bot_user`` (payload), ``application_id`` (== the bot's user id), ``owner_id`` (the
    application owner, also the default owner of every guild).

    Observation: ``sent`` (every message the bot created/edited/sent as an interaction
    response or followup: the stored message payload plus ``kind``, ``allowed_mentions``,
    ``files`` [(filename, bytes)], ``ephemeral``, and ``interaction_id`` for interaction
    messages), ``requests`` [(method, path relative to /api/v10)], ``unknown_requests``,
    ``typing`` [channel ids], ``reactions`` [(channel, message, emoji)], ``faults_served``,
    ``server_errors`` (exceptions inside the fake; assert it stays empty), ``identifies`` /
    ``resumes``, ``gateway_paths``, ``interactions``, ``commands``, ``messages``
    ({channel: {id: payload}}), ``permissions_for(channel_id, user_id)`` (Discord's algorithm).

    Knobs: ``enabled_intents`` (privileged intents on in the "developer portal"; default all;
    without MESSAGE_CONTENT, REST message reads are blanked too), ``heartbeat_interval_ms``,
    ``interaction_ack_timeout`` (3 s), ``fail_next(...)``, ``disconnect(resumable=, code=)``,
    ``send_reconnect()`` (op 7), ``flush()`` (wait until dispatched frames are written).
    """

    def __init__(self) -> None:
        World.__init__(self)
        self._init_gateway()
        self._init_rest()
        self._init_commands()
        self._init_interactions()
        self.sent: list[dict] = []
        self._consumed: list[bool] = []
        self._sent_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a random free port."""
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_get("/gateway-resume", self._gateway_handler)
        self._add_rest_routes(app)
        self._add_command_routes(app)
        self._add_interaction_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._unknown_route)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Close gateway sockets and stop listening (close the bot first)."""
        await self._close_all_gateways()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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
            "description": "", "summary": "", "type": None, "hook": True, "bot_public": True,
            "bot_require_code_grant": False, "verify_key": "0" * 64, "team": None,
            "owner": self.users[self.owner_id], "bot": self.bot_user,
            "flags": self.application_flags,
            "rpc_origins": [], "redirect_uris": [], "tags": [], "interactions_endpoint_url": None,
            "role_connections_verification_url": None, "guild_id": None,
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}}, "approximate_guild_count": len(self.guilds),
        }  # fmt: skip

    # --- events ----------------------------------------------------------------------------------

    async def post_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        attachments: Sequence[tuple[str, bytes, str | None]] = (),
        embeds: Sequence[dict] = (),
        reply_to: int | None = None,
        webhook: bool = False,
    ) -> dict:
        """A user (or, with ``webhook=True``, a webhook whose id is ``author_id``) posts a message.

        ``attachments`` are (filename, bytes, content_type); each is served at its ``url``.
        Returns the stored message payload (REST form).
        """
        guild = self.guild_of(channel_id)
        if guild is not None and not webhook and author_id not in guild.members:
            raise ValueError(f"user {author_id} is not a member of guild {guild.id}")
        atts = [
            self.store_attachment(channel_id, name, data, ctype)
            for name, data, ctype in attachments
        ]
        msg = self.build_message(
            channel_id,
            author_id,
            content,
            attachments=atts,
            embeds=list(embeds),
            reply_to=reply_to,
            webhook_id=author_id if webhook else None,
        )
        self.store_message(msg)
        self._dispatch_message("MESSAGE_CREATE", msg)
        await self.flush()
        return msg

    async def edit_message(
        self,
        channel_id: int,
        message_id: int,
        *,
        content: str | None = None,
        keep_attachment_ids: list[int] | None = None,
    ) -> dict:
        """Edit a stored message (MESSAGE_UPDATE); ``keep_attachment_ids`` drops the others."""
        msg = self.messages[channel_id][message_id]
        if content is not None:
            msg["content"] = content
            msg["mentions"] = [
                self.users[int(u)] for u in p.USER_MENTION.findall(content) if int(u) in self.users
            ]
        if keep_attachment_ids is not None:
            keep = {str(a) for a in keep_attachment_ids}
            msg["attachments"] = [a for a in msg["attachments"] if a["id"] in keep]
        msg["edited_timestamp"] = p.now_iso()
        self._dispatch_message("MESSAGE_UPDATE", msg)
        await self.flush()
        return msg

    async def delete_message(self, channel_id: int, message_id: int) -> None:
        """Delete a stored message (MESSAGE_DELETE)."""
        self.messages[channel_id].pop(message_id, None)
        data = {"id": str(message_id), "channel_id": str(channel_id)}
        guild = self.guild_of(channel_id)
        if guild is not None:
            data["guild_id"] = str(guild.id)
        intent = p.INTENT_GUILD_MESSAGES if guild else p.INTENT_DIRECT_MESSAGES
        self._dispatch(
            "MESSAGE_DELETE",
            data,
            guild_id=guild.id if guild else None,
            channel_id=channel_id,
            intent=intent,
        )
        await self.flush()

    async def bulk_delete(self, channel_id: int, message_ids: list[int]) -> None:
        """Delete several messages at once (MESSAGE_DELETE_BULK)."""
        for mid in message_ids:
            self.messages[channel_id].pop(mid, None)
        guild = self.guild_of(channel_id)
        data = {"ids": [str(m) for m in message_ids], "channel_id": str(channel_id)}
        if guild is not None:
            data["guild_id"] = str(guild.id)
        self._dispatch(
            "MESSAGE_DELETE_BULK",
            data,
            guild_id=guild.id if guild else None,
            channel_id=channel_id,
            intent=p.INTENT_GUILD_MESSAGES,
        )
        await self.flush()

    async def delete_channel(self, channel_id: int) -> None:
        """Delete a channel or thread (CHANNEL_DELETE / THREAD_DELETE) with its messages."""
        channel = self.channels[channel_id]
        guild = self.guild_of(channel_id)
        if channel["type"] in p.THREAD_TYPES:
            data = {k: channel[k] for k in ("id", "guild_id", "parent_id", "type")}
            self._dispatch("THREAD_DELETE", data, guild_id=guild.id, channel_id=channel_id)  # type: ignore[union-attr]
        else:
            self._dispatch("CHANNEL_DELETE", channel, guild_id=guild.id if guild else None)
        children = [
            c
            for c, ch in self.channels.items()
            if ch.get("parent_id") == str(channel_id) and ch["type"] in p.THREAD_TYPES
        ]
        for cid in [channel_id, *children]:
            self.channels.pop(cid)
            self.messages.pop(cid, None)
            if guild is not None:
                guild.channel_ids.remove(cid)
        await self.flush()

    async def remove_bot_from_guild(self, guild_id: int) -> None:
        """Kick the bot from a guild (GUILD_DELETE)."""
        self._dispatch("GUILD_DELETE", {"id": str(guild_id)}, guild_id=guild_id)
        self.guilds[guild_id].members.pop(self.bot_id, None)
        await self.flush()

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
