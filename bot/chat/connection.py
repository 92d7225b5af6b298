"""Reaching Discord at start: login and the first gateway connection within
DISCORD_CONNECT_TIMEOUT_S, or one line saying where Discord could not be reached and why.

Once connected, discord.py reconnects by itself; only the first connection has a deadline, since
a bot that never reached Discord is misconfigured or offline, and waiting helps nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncIterator

import aiohttp
import discord
import yarl


class DiscordUnreachable(Exception):
    """Discord could not be reached at start; the message says where, why and what to check."""

    def __init__(self, where: str, reason: str, check: str) -> None:
        super().__init__(f"cannot reach Discord at {shown(where)}: {reason}. Check {check}")


def shown(url: object) -> str:
    """A URL as logged: a proxy's user name and password left out."""
    try:
        return str(yarl.URL(str(url)).with_user(None))
    except ValueError:
        return "the URL set"


async def connect(bot: discord.Client, token: str, timeout: float) -> None:
    """Logs in and connects, then runs until the bot is closed. Raises DiscordUnreachable when
    the API or the gateway fails or stays silent for `timeout` seconds before the first READY;
    LoginFailure and PrivilegedIntentsRequired pass through."""
    deadline = asyncio.get_running_loop().time() + timeout
    reconnects = quiet_reconnects()
    async with _reaching_api(deadline, timeout):
        await bot.login(token)
    gateway = asyncio.create_task(bot.connect(), name="glimpse-gateway")
    try:
        ready = await _ready_before(bot, gateway, deadline)
        broke = _broke_before_ready(bot, gateway) if ready else None
        if not ready or broke:
            where = str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
            reason = reconnects.last or (connection_reason(broke) if broke else _no_answer(timeout))
            raise DiscordUnreachable(where, reason, _GATEWAY_CHECK)
        await gateway
    finally:
        if not gateway.done():
            gateway.cancel()
            await asyncio.gather(gateway, return_exceptions=True)


async def check_login(token: str, timeout: float) -> None:
    """Before the models load (minutes on a first start, while they download): whether Discord
    takes the token and the Message Content intent is on, read from the application's flags
    (GATEWAY_MESSAGE_CONTENT, or its _LIMITED form below 100 servers). Raises as `connect`
    does, so that a wrong token or a forgotten switch is heard at once, not after the load."""
    deadline = asyncio.get_running_loop().time() + timeout
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        async with _reaching_api(deadline, timeout):
            await http.static_login(token)
            application = await http.application_info()
    finally:
        await http.close()
    if not int(application.get("flags") or 0) & MESSAGE_CONTENT_FLAGS:
        raise discord.PrivilegedIntentsRequired(None)


MESSAGE_CONTENT_FLAGS = 1 << 18 | 1 << 19


@contextlib.asynccontextmanager
async def _reaching_api(deadline: float, timeout: float) -> AsyncIterator[None]:
    """Discord's REST API within the deadline, or DiscordUnreachable saying why not."""
    api = discord.http.Route.BASE
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise DiscordUnreachable(api, _no_answer(timeout), _API_CHECK) from None
    except discord.HTTPException as exc:
        raise DiscordUnreachable(api, _http_reason(exc), _API_CHECK) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise DiscordUnreachable(api, connection_reason(exc), _API_CHECK) from None


def _broke_before_ready(bot: discord.Client, gateway: asyncio.Task[None]) -> BaseException | None:
    """What ended the gateway task before READY, unless it is one of discord.py's own errors
    (the intent, the token): discord.py 2.7 ends with an AttributeError when its first
    connection never opened and it comes to retry."""
    if bot.is_ready() or not gateway.done() or gateway.cancelled():
        return None
    error = gateway.exception()
    return None if isinstance(error, discord.DiscordException) else error


_API_CHECK = "the network, DISCORD_API_URL and any proxy"
_GATEWAY_CHECK = "the network, DISCORD_GATEWAY_URL and any proxy"


async def _ready_before(bot: discord.Client, gateway: asyncio.Task[None], deadline: float) -> bool:
    """True once READY arrives, or once the gateway task has ended (its outcome then says
    why); False if the deadline comes first."""
    ready = asyncio.create_task(bot.wait_until_ready())
    try:
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        done, _ = await asyncio.wait(
            {ready, gateway}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        ready.cancel()
    return bool(done)


def _no_answer(timeout: float) -> str:
    return f"no answer within {timeout:g} s (DISCORD_CONNECT_TIMEOUT_S)"


def _http_reason(exc: discord.HTTPException) -> str:
    response = exc.response
    status = f"HTTP {exc.status} {getattr(response, 'reason', None) or ''}".rstrip()
    content_type = response.headers.get("Content-Type", "") if response is not None else ""
    if "html" in content_type.lower():
        return f"it answered {status} with a web page, not Discord's API (a proxy's error page?)"
    return f"it answered {status}"


def connection_reason(exc: BaseException) -> str:
    """What went wrong with a connection, in words: name lookup, refusal, or the error's own."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"the name {exc.host!r} cannot be looked up (no network, or a wrong address)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED:
            return f"{exc.host}:{exc.port} refused the connection"
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class OneLineReconnects(logging.Filter):
    """discord.py logs each reconnect attempt as an error with a whole traceback; it is a
    warning (discord.py retries by itself), and it fits on one line with its reason. `last`
    keeps the latest reason, for the line that gives up at start."""

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Attempting a reconnect"):
            self.last = connection_reason(record.exc_info[1] or Exception())
            logging.getLogger(record.name).warning("%s: %s", record.getMessage(), self.last)
            return False  # said again above, as one line
        return True


def quiet_reconnects() -> OneLineReconnects:
    """OneLineReconnects on discord.py's client logger (installed once), its `last` cleared."""
    client_log = logging.getLogger("discord.client")
    installed = [f for f in client_log.filters if isinstance(f, OneLineReconnects)]
    reconnects = installed[0] if installed else OneLineReconnects()
    if not installed:
        client_log.addFilter(reconnects)
    reconnects.last = None
    return reconnects
