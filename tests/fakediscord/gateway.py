"""The fake gateway: HELLO, heartbeats, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay.

Frames are plain JSON text (discord.py asks for ``compress=zlib-stream`` in the URL but parses
text frames as they are). Every dispatch goes into the session's log with its sequence number;
a writer task per connection sends the log in order, so a RESUME replays exactly the events the
bot missed (those after the ``seq`` it sends), followed by RESUMED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from . import payloads as p


class Session:
    """A gateway session: survives disconnects so that it can be resumed."""

    def __init__(self, intents: int, shard: list[int] | None) -> None:
        self.id = secrets.token_hex(16)
        self.intents = intents
        self.shard = shard
        self.log: list[str] = []  # frame of seq n is log[n - 1]

    def append(self, event: str, data: Any) -> int:
        seq = len(self.log) + 1
        self.log.append(json.dumps({"op": 0, "t": event, "s": seq, "d": data}))
        return seq


class Connection:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.session: Session | None = None
        self.cursor = 0  # frames of the session's log already written
        self.wake = asyncio.Event()
        self.progress = asyncio.Event()
        self.closed = False
        self.server_closed = False


class GatewayMixin:
    """Gateway half of :class:`~tests.fakediscord.FakeDiscord`.

    Attributes: ``heartbeat_interval_ms`` (HELLO), ``identifies`` / ``resumes`` (counters),
    ``gateway_paths`` (path and query of every gateway connection), ``enabled_intents`` (the
    privileged intents switched on in the "developer portal"; asking for others closes 4014),
    ``session_intents`` (intents of the current session, or None), ``outages`` (guilds
    unavailable to the bot now: see :meth:`start_outage`).
    """

    def _init_gateway(self) -> None:
        self._session: Session | None = None
        self._connections: set[Connection] = set()
        self._ready = asyncio.Event()
        self.heartbeat_interval_ms = 41250
        self.identifies = 0
        self.resumes = 0
        self.gateway_paths: list[str] = []
        self.enabled_intents = p.PRIVILEGED_INTENTS
        self.outages: set[int] = set()

    @property
    def session_intents(self) -> int | None:
        return self._session.intents if self._session else None

    @property
    def connected(self) -> bool:
        """True while a bot's identified/resumed gateway connection is open."""
        return any(c.session is not None and not c.closed for c in self._connections)

    # --- dispatch ------------------------------------------------------------------------------

    def _dispatch(
        self,
        event: str,
        data: dict,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        intent: int | None = None,
        message: bool = False,
        guild_create: int | None = None,
        initial: bool = False,
    ) -> None:
        """Log an event for the current session (if any) and wake its connection.

        Events for guilds the bot is not in, channels it cannot see, or intents it did not ask
        for are not sent; without the message content intent, message payloads are stripped.
        """
        s = self._session
        if s is None or (guild_id in self.outages and guild_create is None):
            return
        if guild_create is not None:
            guild_id = guild_create
        if guild_id is not None:
            guild = self.guilds.get(guild_id)
            if guild is None or self.bot_id not in guild.members:
                return
            intent = p.INTENT_GUILDS if intent is None else intent
        if channel_id in self.channels and not self.can_see(channel_id, self.bot_id):
            return
        if intent and not s.intents & intent:
            return
        if guild_create is not None:
            all_members = bool(s.intents & p.INTENT_GUILD_MEMBERS)
            data = self.guild_payload(guild_create, all_members=all_members)
            if not initial:
                del data["unavailable"]  # a guild joined after READY: discord.py's guild_join
        hide_content = message and not s.intents & p.INTENT_MESSAGE_CONTENT
        if hide_content and not self.content_visible_without_intent(data):
            data = p.strip_content(data)
        s.append(event, data)
        for conn in self._connections:
            if conn.session is s:
                conn.wake.set()

    def _dispatch_message(self, event: str, msg: dict) -> None:
        """MESSAGE_CREATE / MESSAGE_UPDATE with the right intent and visibility rules.

        An ephemeral message reaches the bot that sent it as a direct message would: with the
        DIRECT_MESSAGES intent, without ``guild_id`` or ``member`` (gateway-events.mdx,
        "Messages")."""
        channel_id = int(msg["channel_id"])
        guild = self.guild_of(channel_id)
        if msg["flags"] & p.EPHEMERAL:
            data = self.gateway_message(msg)
            self._dispatch(event, data, intent=p.INTENT_DIRECT_MESSAGES, message=True)
            return
        intent = p.INTENT_GUILD_MESSAGES if guild else p.INTENT_DIRECT_MESSAGES
        self._dispatch(
            event,
            self.gateway_message(msg),
            guild_id=guild.id if guild else None,
            channel_id=channel_id,
            intent=intent,
            message=True,
        )

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every dispatched event has been written to the bot's socket."""
        s = self._session
        for conn in list(self._connections):
            if s is not None and conn.session is s:
                await self._wait_written(conn, len(s.log), timeout)

    async def _wait_written(self, conn: Connection, seq: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not conn.closed and conn.session is not None and conn.cursor < seq:
                conn.progress.clear()
                if conn.cursor >= seq:
                    break
                await conn.progress.wait()

    async def wait_until_ready(self, timeout: float = 5.0) -> None:
        """Until a bot has IDENTIFYed (READY + its GUILD_CREATEs written) or RESUMEd."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # --- connection control ------------------------------------------------------------------

    async def disconnect(self, *, resumable: bool = True, code: int = 4000) -> None:
        """Close the bot's gateway socket; discord.py reconnects by itself.

        ``resumable=True``: the session survives; events dispatched until the bot RESUMEs are
        replayed to it. ``resumable=False``: the session is invalidated, so the RESUME gets op 9
        (invalid session) and the bot IDENTIFYs again; events in between are lost (but stored,
        so history sees them).
        """
        self._ready.clear()
        if not resumable:
            self._session = None
        for conn in list(self._connections):
            conn.server_closed = True
            conn.session = None
            conn.progress.set()
            with contextlib.suppress(Exception):
                await conn.ws.close(code=code, message=b"fake disconnect")

    def start_outage(self, guild_id: int) -> None:
        """The guild becomes unavailable (GUILD_DELETE with ``unavailable``); no event of it
        reaches the bot until :meth:`end_outage` (gateway-events.mdx, "Guild Delete")."""
        self._dispatch(
            "GUILD_DELETE", {"id": str(guild_id), "unavailable": True}, guild_id=guild_id
        )
        self.outages.add(guild_id)

    async def end_outage(self, guild_id: int) -> None:
        """The guild is available again: a full GUILD_CREATE, ``unavailable`` false
        (gateway-events.mdx, "Guild Create", scenario 2)."""
        self.outages.discard(guild_id)
        self._dispatch("GUILD_CREATE", {}, guild_create=guild_id, initial=True)
        await self.flush()

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes and RESUMEs."""
        self._ready.clear()
        for conn in list(self._connections):
            if conn.session is not None:
                await self._send_op(conn, 7, None)

    async def _close_all_gateways(self) -> None:
        for conn in list(self._connections):
            conn.server_closed = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server stopping")

    # --- websocket handler --------------------------------------------------------------------

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = Connection(ws)
        self._connections.add(conn)
        self.gateway_paths.append(request.path_qs)
        writer = asyncio.create_task(self._writer(conn))
        try:
            await self._send_op(
                conn,
                10,
                {"heartbeat_interval": self.heartbeat_interval_ms},
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                try:
                    await self._on_op(conn, frame)
                except Exception as exc:  # a bug in the fake: record it, keep the socket
                    self.server_errors.append(f"gateway op {frame.get('op')}: {exc!r}")
        finally:
            conn.closed = True
            conn.progress.set()
            writer.cancel()
            self._connections.discard(conn)
            clean = ws.close_code in (1000, 1001)
            if conn.session is not None and conn.session is self._session:
                self._ready.clear()
                if clean and not conn.server_closed:
                    self._session = None  # a clean client close ends the session
        return ws

    async def _writer(self, conn: Connection) -> None:
        try:
            while True:
                await conn.wake.wait()
                conn.wake.clear()
                while conn.session is not None and conn.cursor < len(conn.session.log):
                    frame = conn.session.log[conn.cursor]
                    conn.cursor += 1
                    await conn.ws.send_str(frame)
                    self._frame_sent(frame)
                conn.progress.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            conn.closed = True
            conn.progress.set()

    async def _send_op(self, conn: Connection, op: int, data: Any) -> None:
        frame = json.dumps({"op": op, "d": data, "s": None, "t": None})
        with contextlib.suppress(Exception):
            await conn.ws.send_str(frame)
            self._frame_sent(frame)

    def _frame_sent(self, frame: str) -> None:  # overridden by the server to record traffic
        pass

    async def _on_op(self, conn: Connection, frame: dict) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            await self._send_op(conn, 11, None)
        elif op == 2:
            await self._identify(conn, d or {})
        elif op == 6:
            await self._resume(conn, d or {})
        elif conn.session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
        elif op == 8:
            self._request_members(d or {})
        elif op not in (3, 4):
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: Connection, d: dict) -> None:
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        intents = int(d.get("intents", 0))
        if intents & p.PRIVILEGED_INTENTS & ~self.enabled_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        s = self._session = Session(intents, d.get("shard"))
        conn.session, conn.cursor = s, 0
        self.identifies += 1
        my_guilds = [g for g in self.guilds.values() if self.bot_id in g.members]
        # gateway-events.mdx, "Ready Event Fields" (and nothing else).
        ready = {
            "v": 10, "user": self.current_user(), "session_id": s.id,
            "resume_gateway_url": self.resume_gateway_url,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in my_guilds],
            "application": {"id": str(self.application_id), "flags": self.application_flags},
        }  # fmt: skip
        if s.shard is not None:
            ready["shard"] = s.shard
        s.append("READY", ready)
        for g in my_guilds:
            if g.id in self.outages:  # gateway-events.mdx, "Guild Create", scenario 1
                s.append("GUILD_DELETE", {"id": str(g.id), "unavailable": True})
            else:
                self._dispatch("GUILD_CREATE", {}, guild_create=g.id, initial=True)
        conn.wake.set()
        await self._wait_written(conn, len(s.log))
        self._ready.set()

    async def _resume(self, conn: Connection, d: dict) -> None:
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        s = self._session
        seq = d.get("seq") or 0
        if s is None or d.get("session_id") != s.id or seq > len(s.log):
            await self._send_op(conn, 9, False)
            return
        for other in list(self._connections):
            if other is not conn and other.session is s:
                other.session = None
                other.server_closed = True
                with contextlib.suppress(Exception):
                    await other.ws.close(code=4000, message=b"session resumed elsewhere")
        conn.session, conn.cursor = s, seq
        s.append("RESUMED", {})
        self.resumes += 1
        conn.wake.set()
        await self._wait_written(conn, len(s.log))
        self._ready.set()

    def _request_members(self, d: dict) -> None:
        guild_id = int(d["guild_id"])
        guild = self.guilds.get(guild_id)
        if guild is None:
            return
        user_ids = d.get("user_ids")
        if user_ids is not None:
            wanted = [int(u) for u in ([user_ids] if isinstance(user_ids, str | int) else user_ids)]
            found = [u for u in wanted if u in guild.members]
            not_found = [str(u) for u in wanted if u not in guild.members]
        else:
            query = (d.get("query") or "").lower()
            found = [
                u for u in guild.members if self.users[u]["username"].lower().startswith(query)
            ]
            limit = int(d.get("limit") or 0)
            found, not_found = (found[:limit] if limit else found), []
        data: dict[str, Any] = {
            "guild_id": str(guild_id), "chunk_index": 0, "chunk_count": 1,
            "members": [self.member_payload(guild_id, u) for u in found], "not_found": not_found,
        }  # fmt: skip
        if d.get("presences"):
            data["presences"] = []
        if d.get("nonce") is not None:
            data["nonce"] = d["nonce"]
        self._dispatch("GUILD_MEMBERS_CHUNK", data, guild_id=guild_id, intent=0)
