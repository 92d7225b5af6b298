"""The heartbeat: written while connected and answering, never by a stuck lane, gone on close."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import discord
import pytest

from bot.health import MAX_AGE_S, Heartbeat, heartbeat_age, main, write_heartbeat
from bot.workers import Workers
from tests.e2e.harness import bot_settings, running
from tests.fakediscord import FakeDiscord

ROOT = Path(__file__).resolve().parents[1]


class FakeSocket:
    def __init__(self) -> None:
        self.open = True


class FakeClient:
    """The four things `Heartbeat` reads from a discord.py client."""

    def __init__(self) -> None:
        self.ready = True
        self.closed = False
        self.ws: FakeSocket | None = FakeSocket()
        self.latency = 0.05

    def is_ready(self) -> bool:
        return self.ready

    def is_closed(self) -> bool:
        return self.closed


def noop() -> None:
    """Stands for the vision service's ping: answers once the model lane is free."""


def fresh(path: Path, max_age: float = MAX_AGE_S, now: float | None = None) -> bool:
    age = heartbeat_age(path, now)
    return age is not None and age <= max_age


@pytest.fixture
def workers() -> Iterator[Workers]:
    pool = Workers()
    yield pool
    pool.shutdown(wait=False)


@pytest.fixture
async def beating(tmp_path: Path, workers: Workers) -> AsyncIterator[tuple[FakeClient, Heartbeat]]:
    client = FakeClient()
    heartbeat = Heartbeat(
        client, lambda: workers.run("model", noop), tmp_path / "heartbeat", interval=0.02
    )  # type: ignore[arg-type]
    yield client, heartbeat
    await heartbeat.stop()


def present(path: Path) -> bool:
    return path.exists()


async def wait_for_file(path: Path, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not present(path):
        assert asyncio.get_running_loop().time() < deadline, f"no {path} after {timeout} s"
        await asyncio.sleep(0.01)


async def test_beats_while_connected_and_the_lane_answers(
    beating: tuple[FakeClient, Heartbeat],
) -> None:
    _, heartbeat = beating
    heartbeat.start()
    await wait_for_file(heartbeat.path)
    first = heartbeat.path.stat().st_mtime
    await asyncio.sleep(0.1)
    assert heartbeat.path.stat().st_mtime >= first
    assert fresh(heartbeat.path, max_age=5)
    await heartbeat.stop()
    assert not heartbeat.path.exists()


@pytest.mark.parametrize(
    "breakage",
    ["not ready", "closed", "socket closed", "no socket", "latency inf", "latency nan"],
)
async def test_no_beat_when_not_connected(
    beating: tuple[FakeClient, Heartbeat], breakage: str
) -> None:
    client, heartbeat = beating
    if breakage == "not ready":
        client.ready = False
    elif breakage == "closed":
        client.closed = True
    elif breakage == "socket closed":
        assert client.ws is not None
        client.ws.open = False
    elif breakage == "no socket":
        client.ws = None
    else:
        client.latency = math.inf if breakage == "latency inf" else math.nan
    assert not await heartbeat.alive()


async def test_no_beat_while_the_model_lane_is_stuck(
    beating: tuple[FakeClient, Heartbeat], workers: Workers
) -> None:
    _, heartbeat = beating
    heartbeat.lane_timeout = 0.1
    release = threading.Event()
    stuck = asyncio.ensure_future(workers.run("model", release.wait, 10))
    try:
        heartbeat.start()
        await asyncio.sleep(0.4)
        assert not heartbeat.path.exists()
        assert not await heartbeat.alive()
    finally:
        release.set()
        await stuck
    await wait_for_file(heartbeat.path)  # the lane answers again: so does the heartbeat


async def test_no_beat_once_the_workers_are_shut_down(
    beating: tuple[FakeClient, Heartbeat], workers: Workers
) -> None:
    _, heartbeat = beating
    workers.shutdown()
    assert not await heartbeat.alive()


async def test_a_file_left_by_a_killed_bot_is_dropped_at_start(
    beating: tuple[FakeClient, Heartbeat],
) -> None:
    client, heartbeat = beating
    write_heartbeat(heartbeat.path)
    client.ready = False
    heartbeat.start()
    assert not present(heartbeat.path)


def test_age_check(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    assert heartbeat_age(path) is None
    assert not fresh(path)
    write_heartbeat(path, now=1_000.0)
    assert heartbeat_age(path, now=1_030.0) == pytest.approx(30.0)
    assert fresh(path, max_age=60, now=1_030.0)
    assert not fresh(path, max_age=60, now=1_061.0)
    assert [p.name for p in tmp_path.iterdir()] == ["heartbeat"]  # no temporary left behind


def test_probe_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path)]) == 1
    assert "no heartbeat" in capsys.readouterr().out
    write_heartbeat(tmp_path / "heartbeat")
    assert main(["--data-dir", str(tmp_path), "--max-age", "60"]) == 0
    write_heartbeat(tmp_path / "heartbeat", now=0.0)
    assert main(["--data-dir", str(tmp_path), "--max-age", "60"]) == 1
    assert "unhealthy: last heartbeat" in capsys.readouterr().out


def test_probe_reads_data_dir_as_the_bot_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without Docker, DATA_DIR is often set in .env only; the environment wins over it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATA_DIR", raising=False)
    (tmp_path / ".env").write_text("DATA_DIR=state\nDISCORD_TOKEN=x\n")
    (tmp_path / "state").mkdir()
    write_heartbeat(tmp_path / "state" / "heartbeat")
    assert main([]) == 0
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "elsewhere"))
    assert main([]) == 1
    assert f"no heartbeat at {tmp_path / 'elsewhere' / 'heartbeat'}" in capsys.readouterr().out


def test_probe_imports_no_model_library(tmp_path: Path) -> None:
    """The container's HEALTHCHECK command, as it runs there: cheap, so no torch."""
    write_heartbeat(tmp_path / "heartbeat")
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot.health", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in probe.stderr.splitlines()}
    assert "bot" in imported  # the parsing works
    assert not imported & {"torch", "transformers", "discord", "numpy", "PIL"}


async def test_the_bot_beats_when_ready_and_removes_the_file_on_close(tmp_path: Path) -> None:
    server = FakeDiscord()
    guild = server.add_guild("Shapes")
    server.add_channel(guild, "general")
    await server.start()
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    path = tmp_path / "data" / "heartbeat"
    try:
        async with running(bot_settings(server, tmp_path / "data")):
            await wait_for_file(path)
            assert fresh(path, max_age=5)
        assert not path.exists()
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        await server.stop()


def test_probe_says_why_in_one_line_when_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DATA_DIR that is a file (a mount gone wrong) is unhealthy, told in a line, not a
    traceback in `docker inspect`."""
    (tmp_path / "data").write_text("not a folder")
    assert main(["--data-dir", str(tmp_path / "data")]) == 1
    assert capsys.readouterr().out.startswith(f"unhealthy: cannot read {tmp_path / 'data'}")


@pytest.mark.parametrize("max_age", ["nan", "inf", "0", "-5", "soon"])
def test_probe_refuses_a_limit_no_age_can_pass(
    max_age: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_heartbeat(tmp_path / "heartbeat", now=0.0)  # decades old
    with pytest.raises(SystemExit) as exit_:
        main(["--data-dir", str(tmp_path), "--max-age", max_age])
    assert exit_.value.code == 2 and "--max-age" in capsys.readouterr().err
