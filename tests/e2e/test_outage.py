"""An outage during a backlog costs time, never work (issue 13): Discord's API and media answer
503 for several times the retry cap while 500 uploads wait, and afterwards every one of them is
indexed and searchable. The retry timing is scaled down through the product's own parameters."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.index import background
from tests.e2e.harness import World, bot_settings, indexed, running, shape_png
from tests.fakediscord import FakeDiscord
from tests.shapes import CLASSES

UPLOADS = 500
RETRY_START_S = 0.05
RETRY_CAP_S = 0.5
OUTAGE_S = 8 * RETRY_CAP_S


async def test_a_backlog_survives_an_outage_of_api_and_media(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(background, "RETRY_START_S", RETRY_START_S)
    monkeypatch.setattr(background, "RETRY_CAP_S", RETRY_CAP_S)
    caplog.set_level(logging.INFO, logger="bot")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        server.fail_next("*", ".", 503, count=10**9)  # every API and media request
        kinds: dict[str, tuple[str, str]] = {}
        for i in range(UPLOADS):
            channel = (world.general, world.other)[i // len(CLASSES) % 2]
            kind = CLASSES[i % len(CLASSES)]
            upload = (f"{i}.png", shape_png(*kind, seed=i), "image/png")
            posted = await server.post_message(channel, world.bob, attachments=[upload])
            kinds[posted["id"]] = kind
        await asyncio.sleep(OUTAGE_S)
        failed_while_down = len(server.faults_served)
        assert await bot.index.count() == 0
        assert await bot.index.pending_count() == UPLOADS  # waiting, none dropped
        # It kept trying through the outage, no less often than every RETRY_CAP_S.
        assert failed_while_down >= OUTAGE_S / RETRY_CAP_S
        server.clear_faults()
        await indexed(bot, UPLOADS, timeout=300)
        assert await bot.index.count() == UPLOADS
        for kind in CLASSES[:4]:
            await server.post_message(
                world.general, world.alice, f"!find a {kind[0]} {kind[1]} top: 3"
            )
            reply = await server.wait_for_sent(channel_id=world.general, timeout=30)
            assert [kinds[e["url"].rsplit("/", 1)[-1]] for e in reply["embeds"]] == [kind] * 3
    dropped = [r.getMessage() for r in caplog.records if "not indexing" in r.getMessage()]
    assert dropped == []
