"""`python -m bot run` when the start goes wrong: one line an admin can act on, and a clean stop
on SIGTERM or Ctrl-C at any moment. Real processes against servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import discord
import pytest
from aiohttp import web

from bot.app import create_bot, run
from bot.chat.connection import connect
from bot.config import ConfigError, Settings
from tests.conftest import TINY_BLIP, TINY_CLIP, tiny_settings
from tests.e2e.harness import World, bot_settings, running
from tests.fakediscord import FakeDiscord
from tests.fakediscord import payloads as p
from tests.local_http import serving

ROOT = Path(__file__).resolve().parents[2]
API_CHECK = "Check the network, DISCORD_API_URL and any proxy"


class Silent:
    """A server that accepts connections and never answers; `connected` is set on the first."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Silent:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)
            self.connected.set()

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._held:
            writer.close()
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def proxy_404() -> AsyncIterator[str]:
    """What a misconfigured proxy answers: an HTML error page with status 404."""

    async def not_found(request: web.Request) -> web.Response:
        html = "<html><body><h1>404 Not Found</h1>nginx</body></html>"
        return web.Response(status=404, text=html, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}/api/v10"


async def start_bot(tmp_path: Path, **env: str) -> asyncio.subprocess.Process:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "DISCORD_TOKEN": "MTIz.startup-test.token",
        "DATA_DIR": str(tmp_path / "data"),
        "CAPTION_MODEL": str(TINY_BLIP),
        "SEARCH_MODEL": str(TINY_CLIP),
        "DEVICE": "cpu",
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp_path, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=as_from_a_terminal,
    )  # fmt: skip


def as_from_a_terminal() -> None:
    """In the child before it starts: Ctrl-C at its default, as for a terminal's foreground
    job. Run as a background job, these tests start with SIGINT ignored (a shell without job
    control ignores it for `&` commands), which the bot would keep ignoring, as asked."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def stops_with(process: asyncio.subprocess.Process, timeout: float = 60) -> list[str]:
    """stderr's lines once the process has ended; never a traceback."""
    _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    log = stderr.decode()
    assert "Traceback" not in log, log
    return log.splitlines()


def the_error(lines: list[str]) -> str:
    """The one `error:` line, which is the last."""
    errors = [line for line in lines if line.startswith("error: ") or " ERROR " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], "\n".join(lines)
    return errors[0]


async def test_a_refused_connection_is_one_line(tmp_path: Path) -> None:
    port = closed_port()
    api = f"http://127.0.0.1:{port}/api/v10"
    process = await start_bot(tmp_path, DISCORD_API_URL=api)
    lines = await stops_with(process)
    assert process.returncode == 1
    assert the_error(lines) == (
        f"error: cannot reach Discord at {api}: 127.0.0.1:{port} refused the connection. "
        f"{API_CHECK}"
    )


async def test_a_gateway_proxys_password_is_not_shown(tmp_path: Path) -> None:
    port = closed_port()
    api, gateway = f"http://127.0.0.1:{port}/api/v10", f"ws://glimpse:hunter2@127.0.0.1:{port}"
    process = await start_bot(tmp_path, DISCORD_API_URL=api, DISCORD_GATEWAY_URL=gateway)
    lines = await stops_with(process)
    assert the_error(lines).startswith(f"error: cannot reach Discord at {api}: ")
    assert any(f"Discord API at {api}, gateway at ws://127.0.0.1:{port}" in x for x in lines)
    assert not [line for line in lines if "hunter2" in line]


async def test_a_proxys_error_page_is_one_line(tmp_path: Path, proxy_404: str) -> None:
    process = await start_bot(tmp_path, DISCORD_API_URL=proxy_404)
    lines = await stops_with(process)
    assert process.returncode == 1
    assert the_error(lines) == (
        f"error: cannot reach Discord at {proxy_404}: it answered HTTP 404 Not Found with a web "
        f"page, not Discord's API (a proxy's error page?). {API_CHECK}"
    )


async def test_no_answer_gives_up_after_the_timeout(tmp_path: Path) -> None:
    async with Silent() as silent:
        api = f"{silent.url}/api/v10"
        process = await start_bot(tmp_path, DISCORD_API_URL=api, DISCORD_CONNECT_TIMEOUT_S="2")
        await asyncio.wait_for(silent.connected.wait(), 60)
        asked = time.monotonic()
        lines = await stops_with(process)
        waited = time.monotonic() - asked
    assert process.returncode == 1
    assert the_error(lines) == (
        f"error: cannot reach Discord at {api}: no answer within 2 s (DISCORD_CONNECT_TIMEOUT_S). "
        f"{API_CHECK}"
    )
    assert waited < 10, f"stopped {waited:.1f} s after the request"


async def test_a_gateway_that_refuses_is_retried_then_one_line(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    port = closed_port()
    process = await start_bot(
        tmp_path,
        DISCORD_TOKEN=server.token,
        DISCORD_API_URL=server.api_url,
        DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{port}",
        DISCORD_CONNECT_TIMEOUT_S="4",
    )
    lines = await stops_with(process)
    assert process.returncode == 1
    assert the_error(lines) == (
        f"error: cannot reach Discord at ws://127.0.0.1:{port}: 127.0.0.1:{port} refused the "
        "connection. Check the network, DISCORD_GATEWAY_URL and any proxy"
    )
    retries = [line for line in lines if "Attempting a reconnect" in line]
    assert retries and all(" WARNING discord.client: " in line for line in retries)
    assert all(line.endswith(f"127.0.0.1:{port} refused the connection") for line in retries)


def test_a_name_that_cannot_be_looked_up_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: a subprocess's lookup would go to the network's resolver, beyond 127.0.0.1.
    The lookup fails here exactly as the resolver fails it, with socket.gaierror."""
    looked_up: list[str] = []
    guarded = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "discord.invalid":
            looked_up.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return guarded(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)  # restored after
    api = "http://discord.invalid/api/v10"
    settings = tiny_settings(
        DISCORD_TOKEN="MTIz.startup-test.token",
        DISCORD_API_URL=api,
        DATA_DIR=str(tmp_path / "data"),
        PRELOAD_MODELS="false",
    )
    assert run(settings) == 1
    assert looked_up == ["discord.invalid"]
    assert capsys.readouterr().err.splitlines() == [
        f"error: cannot reach Discord at {api}: the name 'discord.invalid' cannot be looked up "
        f"(no network, or a wrong address). {API_CHECK}"
    ]


async def test_the_message_content_intent_off_is_one_line(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """Heard before the models load (minutes on a first start), from the application's flags,
    and from the gateway too, where it closes with 4014."""
    server.enabled_intents &= ~p.INTENT_MESSAGE_CONTENT  # the developer portal's switch
    process = await start_bot(
        tmp_path,
        DISCORD_TOKEN=server.token,
        DISCORD_API_URL=server.api_url,
        DISCORD_GATEWAY_URL=server.gateway_url,
    )
    lines = await stops_with(process)
    assert process.returncode == 1
    assert the_error(lines) == INTENT_OFF
    assert not [line for line in lines if " loaded on " in line], lines
    assert server.identifies == 0
    # The gateway's own refusal, should the flags and the switch ever disagree.
    settings = bot_settings(server, tmp_path / "data")
    async with create_bot(settings) as bot:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await connect(bot, server.token, 30)


INTENT_OFF = (
    "error: the Message Content intent is off: enable it under Bot > Privileged Gateway "
    "Intents in the Discord developer portal"
)


@pytest.mark.parametrize("preload", ["true", "false"])
async def test_a_checkpoint_of_the_wrong_kind_is_one_line(tmp_path: Path, preload: str) -> None:
    """Found and checked at start even when the models load on first use: else each member's
    command would fail on it, and the admin hear of it from them."""
    process = await start_bot(tmp_path, CAPTION_MODEL=str(TINY_CLIP), PRELOAD_MODELS=preload)
    lines = await stops_with(process)
    assert process.returncode == 1
    assert the_error(lines) == (
        f"error: CAPTION_MODEL: '{TINY_CLIP}' is a CLIP checkpoint, not a BLIP one. "
        "Fix: set CAPTION_MODEL to a BLIP checkpoint"
    )


async def stop_when(
    started: Callable[[], Awaitable[object]], process: asyncio.subprocess.Process, sig: int
) -> tuple[list[str], float]:
    await asyncio.wait_for(started(), 60)
    process.send_signal(sig)
    sent = time.monotonic()
    lines = await stops_with(process)
    return lines, time.monotonic() - sent


async def test_ctrl_c_during_login_exits_130_quietly(tmp_path: Path) -> None:
    async with Silent() as silent:
        process = await start_bot(tmp_path, DISCORD_API_URL=f"{silent.url}/api/v10")
        lines, took = await stop_when(silent.connected.wait, process, signal.SIGINT)
    assert process.returncode == 130, lines
    assert not [line for line in lines if "error" in line.lower()], lines
    assert took < 10


async def test_sigterm_while_a_model_loads_exits_0_quietly(tmp_path: Path) -> None:
    """The caption model is a hub id and the hub (here, one that never answers) is being asked
    for it: the start is inside model loading when SIGTERM comes."""
    async with Silent() as hub:
        process = await start_bot(
            tmp_path,
            CAPTION_MODEL="glimpse-test/blip",
            HF_HUB_OFFLINE="",
            HF_ENDPOINT=hub.url,
            HF_HOME=str(tmp_path / "hf"),
            HF_HUB_ETAG_TIMEOUT="3",
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        lines, took = await stop_when(hub.connected.wait, process, signal.SIGTERM)
    assert process.returncode == 0, lines
    assert not [line for line in lines if "error" in line.lower()], lines
    assert took < 15  # the load in progress is waited for: at most the hub's timeouts


async def refused_start(settings: Settings) -> str:
    """The one line with which the bot's resources refuse to be made."""
    with pytest.raises(ConfigError) as refused:
        async with create_bot(settings):
            pass
    return str(refused.value)


async def test_a_second_bot_on_the_same_data_dir_is_one_line(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """Two bots on one DATA_DIR (a `docker compose run` beside the service) would answer every
    command twice and share one index and one heartbeat: the second refuses to start."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings):
        assert await refused_start(settings) == (
            f"DATA_DIR: cannot use {str(settings.data_dir)!r}: another Glimpse is running on "
            "it; stop it first"
        )
    async with running(settings) as bot:  # free again once the first has stopped
        assert bot.is_ready()


async def test_an_sqlite_too_old_for_the_index_is_one_line(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index needs SQLite 3.35 (DELETE ... RETURNING; an upsert without a conflict
    target): a Python linked to an older one (Ubuntu 20.04's 3.31) would start, then fail
    every write. It is refused at the start, before anything is written."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    settings = bot_settings(server, tmp_path / "data")
    assert await refused_start(settings) == (
        f"DATA_DIR: cannot use {str(settings.data_dir)!r}: this Python's SQLite is 3.31.1, and "
        "the image index needs 3.35 or newer (the Docker image has it)"
    )
    assert not (settings.data_dir / "index.sqlite3").exists()


async def test_a_data_dir_that_cannot_be_locked_still_runs(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Some network and FUSE mounts have no locks (ENOLCK): the bot runs there as before,
    saying it is not guarded against a second one."""

    def no_locks(fd: object, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        assert bot.is_ready()
    assert any("not guarded against a second bot" in r.getMessage() for r in caplog.records)
