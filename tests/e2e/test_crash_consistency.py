"""SIGKILL in the middle of indexing: the index stays consistent and loses nothing."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from tests.e2e.harness import (
    World,
    bot_process,
    bot_settings,
    eventually,
    indexed,
    is_indexed,
    running,
    shape_png,
)
from tests.fakediscord import FakeDiscord
from tests.shapes import CLASSES

MAX_UPLOADS = 400
AFTER_KILL = 20  # uploads posted while the bot is dead, for the restart to catch up


def rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def assert_consistent(db: Path) -> None:
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    both = "SELECT COUNT(*) FROM images JOIN pending USING (message_id, attachment_id)"
    assert rows(db, both) == [(0,)]  # never indexed and pending at once
    assert rows(db, "SELECT COUNT(*) FROM images WHERE length(embedding) != 4 * dim") == [(0,)]


async def test_sigkill_mid_indexing_leaves_a_consistent_index(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    db = data / "index.sqlite3"
    process = await bot_process(server, data, tmp_path)
    await server.wait_until_ready(timeout=60)
    posted: list[dict] = []
    killed = asyncio.Event()

    async def post_uploads() -> None:
        """A steady stream of uploads, before, during and after the kill."""
        after_kill = 0
        while after_kill < AFTER_KILL and len(posted) < MAX_UPLOADS:
            colour, shape = CLASSES[len(posted) % len(CLASSES)]
            png = shape_png(colour, shape, seed=len(posted))
            attachment = (f"{len(posted)}.png", png, "image/png")
            message = await server.post_message(
                world.general, world.bob, "", attachments=[attachment]
            )
            posted.append(message)
            after_kill += killed.is_set()
            await asyncio.sleep(0.005)

    async def some_indexed() -> bool:
        return db.exists() and rows(db, "SELECT COUNT(*) FROM images")[0][0] >= 10

    poster = asyncio.create_task(post_uploads())
    try:
        await eventually(some_indexed, timeout=60)
        process.send_signal(signal.SIGKILL)
        killed.set()
        await process.wait()
        await poster
    finally:
        poster.cancel()
        if process.returncode is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    uploads = len(posted)
    assert uploads < MAX_UPLOADS  # killed while uploads were still arriving
    (indexed_at_kill,) = rows(db, "SELECT COUNT(*) FROM images")[0]
    (pending_at_kill,) = rows(db, "SELECT COUNT(*) FROM pending")[0]
    print(
        f"\nSIGKILL left {indexed_at_kill} of {uploads} uploads indexed, {pending_at_kill} pending"
    )
    assert 10 <= indexed_at_kill < uploads
    assert_consistent(db)

    async with running(bot_settings(server, data)) as bot:
        await indexed(bot, uploads, timeout=60)
        for message in posted:
            key = int(message["id"]), int(message["attachments"][0]["id"])
            assert await is_indexed(bot, *key), key
        assert await bot.index.count() == uploads
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM images") == [
        (uploads, uploads)
    ]
    assert rows(db, "SELECT COUNT(*) FROM pending") == [(0,)]
    assert_consistent(db)
