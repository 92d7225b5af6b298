"""`python -m bot` as an admin runs it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

from bot.index.schema import SCHEMA_VERSION
from tests.e2e.harness import World, bot_process, bot_settings, indexed, running, shape_png
from tests.fakediscord import FakeDiscord


async def start_process(
    server: FakeDiscord, data: Path, cwd: Path, token: str | None = None
) -> asyncio.subprocess.Process:
    return await bot_process(server, data, cwd, token=token)


async def test_sigterm_stops_cleanly_and_keeps_pending_work(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    process = await start_process(server, data, tmp_path)
    await server.wait_until_ready(timeout=60)
    await server.post_message(
        world.general,
        world.alice,
        "!caption",
        attachments=[("a.png", shape_png("red", "circle"), "image/png")],
    )
    assert (await server.wait_for_sent(channel_id=world.general, timeout=60))[
        "content"
    ] == "a red circle"
    for i in range(20):
        await server.post_message(
            world.general,
            world.bob,
            "",
            attachments=[(f"{i}.png", shape_png("blue", "square", seed=i), "image/png")],
        )
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, stderr = await asyncio.wait_for(process.communicate(), 15)
    elapsed = time.monotonic() - stopped
    log = stderr.decode()
    assert process.returncode == 0, log
    assert elapsed < 10, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in log and server.token not in log
    assert " WARNING " not in log  # no notice about voice, a feature the bot does not have

    async with running(bot_settings(server, data)) as bot:
        await indexed(bot, 21)  # nothing lost: queued or caught up after the restart
        assert await bot.index.count() == 21


async def test_a_rejected_token_is_one_clear_line(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    process = await start_process(server, tmp_path / "data", tmp_path, token="not.the.token")
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert lines[-1] == (
        "error: DISCORD_TOKEN: Discord rejected the token; copy it again from the portal"
    )
    assert not [line for line in lines[:-1] if "ERROR" in line or "error" in line], lines
    assert "Traceback" not in stderr.decode()
    assert not [line for line in lines if " loaded on " in line], lines  # heard before the load


async def test_a_token_reset_while_the_bot_runs_is_one_clear_line(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """Reset Token in the portal: the gateway closes with 4004 when the bot comes back with
    the old one (opcodes-and-status-codes.mdx, "Gateway Close Event Codes"), and discord.py
    gives up with ConnectionClosed."""
    process = await start_process(server, tmp_path / "data", tmp_path)
    await server.wait_until_ready(timeout=60)
    server.token = "a.new.token"
    await server.disconnect()
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    lines = stderr.decode().splitlines()
    assert lines[-1] == (
        "error: DISCORD_TOKEN: Discord rejected the token; copy it again from the portal"
    )
    assert "Traceback" not in stderr.decode()


async def last_line(process: asyncio.subprocess.Process) -> str:
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "Traceback" not in stderr.decode()
    return stderr.decode().splitlines()[-1]


async def test_an_index_from_a_newer_bot_is_one_clear_line(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """The admin rolled back after an upgrade: the index is left as it is, and said so."""
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "index.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    process = await start_process(server, data, tmp_path)
    assert await last_line(process) == (
        f"error: DATA_DIR: cannot use '{data}': {data / 'index.sqlite3'} has schema version "
        f"{SCHEMA_VERSION + 1}, newer than this code's {SCHEMA_VERSION}: upgrade the bot"
    )
    assert server.identifies == 0


async def test_a_data_folder_the_bot_cannot_write_is_one_clear_line(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """A host folder mounted at DATA_DIR that the bot's user may not write in (README,
    Troubleshooting): SQLite alone says only "unable to open database file"."""
    data = tmp_path / "data"
    data.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes in any folder a mode protects; sysfs refuses even root
        data = Path("/sys/kernel")
    process = await start_process(server, data, tmp_path)
    assert await last_line(process) == f"error: DATA_DIR: cannot use '{data}': Permission denied"
