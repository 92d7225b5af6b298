"""Runs the test suite's Discord-compatible server until killed (used by docker-smoke.sh).

Prints one JSON line with `api_url`, `gateway_url` and `token` once it listens on 127.0.0.1
(a random free port), and stops on SIGTERM or SIGINT. Without the media hosts, it needs only
aiohttp (no trustme, a test dependency), so the bot's own image can run it:
`python scripts/fake_discord_server.py` from the repository root.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakediscord import FakeDiscord


async def serve() -> None:
    server = FakeDiscord()
    guild = server.add_guild("Smoke")
    server.add_member(guild, server.add_user("alice"))
    server.add_channel(guild, "general")
    await server.start(media=False)  # the smoke posts no image
    print(
        json.dumps(
            {"api_url": server.api_url, "gateway_url": server.gateway_url, "token": server.token}
        ),
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(serve())
