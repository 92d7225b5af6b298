"""Load: 200 commands from 50 members in 10 channels during a burst of 500 uploads, with the
default cooldown and Discord's rate limits on (the test server applies them by default: 5
messages per 5 s per channel, 50 requests per second in all).

The test server runs on its own thread (tests/fakediscord/threaded.py), so the bot's event loop
does only the bot's work, and asyncio's debug mode reports every callback on it that holds the
loop for more than 50 ms: any such report fails the test. Run with `-s` to see the figures
(reply latency p50/p95, loop lag p99/max, peak memory, requests refused).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import resource
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    World,
    bot_settings,
    indexed,
    is_indexed,
    running,
    serving,
    shape_png,
)
from tests.fakediscord.threaded import ThreadedServer
from tests.shapes import CLASSES

MEMBERS = 50
COMMANDS_EACH = 4  # within the default cooldown of 5 commands a minute
UPLOADS = 500
# All 200 at once can trip MAX_PENDING (64 queued): "I'm busy", by design. And each command
# costs the bot about three requests (typing, reply, a message fetch for `!find`), while Discord
# allows 50 requests per second in all (rate-limits.mdx, "Global Rate Limit"): at 10 commands a
# second the bot stays within it and the test measures the bot, not the limit.
COMMANDS_PER_S = 10
UPLOADS_PER_S = 50
P95_LIMIT_S = 10.0
CHANNELS = 10
#: Discord bans an IP for a while after 10,000 invalid requests (401, 403, 429) in 10 minutes
#: (rate-limits.mdx, "Invalid Request Limit"); a well-behaved bot makes almost none.
INVALID_LIMIT = 50
SLOW_CALLBACK_S = 0.05
LAG_SAMPLE_S = 0.01


@pytest.fixture
async def server() -> AsyncIterator[ThreadedServer]:
    """This test's server, on its own thread (the harness's `world` is built on it)."""
    async with serving(ThreadedServer()) as fake:
        yield fake


class LoopLag:
    """How late a 10 ms sleep wakes up on the bot's loop, sampled while the load runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_SAMPLE_S)
            self.samples.append((loop.time() - start - LAG_SAMPLE_S) * 1000)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
def collector() -> Iterator[None]:
    """Leaves the garbage collector as it was, however the test ends."""
    yield
    gc.enable()
    gc.unfreeze()


@pytest.mark.usefixtures("collector")
async def test_two_hundred_commands_during_five_hundred_uploads(
    server: ThreadedServer, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    members = [world.alice, world.bob, world.carol]
    while len(members) < MEMBERS:
        members.append(server.add_user(f"member{len(members)}"))
        server.add_member(world.guild, members[-1])
    channels = [world.general, world.other]
    channels += [server.add_channel(world.guild, f"room{i}") for i in range(CHANNELS - 2)]
    uploads = [
        (channels[i % CHANNELS], members[i % MEMBERS], shape_png(*CLASSES[i % 12], seed=i))
        for i in range(UPLOADS)
    ]
    commands = []  # (channel, member, content, attachment or None, expected caption or None)
    for n in range(MEMBERS * COMMANDS_EACH):
        member, round_ = members[n % MEMBERS], n // MEMBERS
        colour, shape = CLASSES[n % 12]
        if round_ % 2 == 0:
            attachment = (f"c{n}.png", shape_png(colour, shape, seed=1000 + n), "image/png")
            commands.append(
                (channels[n % CHANNELS], member, "!caption", attachment, f"a {colour} {shape}")
            )
        else:
            commands.append(
                (channels[n % CHANNELS], member, f"!find a {colour} {shape}", None, None)
            )

    loop = asyncio.get_running_loop()
    replied_at: dict[str, float] = {}
    record = server.inner._append_sent

    def stamped(entry: dict[str, Any]) -> None:  # on the server's thread; loop.time is monotonic
        replied_at[entry["id"]] = loop.time()
        record(entry)

    server.inner._append_sent = stamped  # type: ignore[method-assign]

    settings = bot_settings(server, tmp_path / "data", COOLDOWN="5/60")  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, logger="asyncio")
    loop.slow_callback_duration = SLOW_CALLBACK_S
    async with running(settings) as bot:
        # A bot's process does not carry the garbage of the tests that ran before this one in
        # the same process: a full collection of it would land in some callback of the bot's.
        gc.collect()
        gc.freeze()
        # Nor does it share its heap with a test server. Automatic full collections of the
        # server's and this test's objects paused the loop 8-45 ms each here (measured with
        # gc.callbacks), growing with the run, and landed in whichever callback ran: a pause of
        # this process, not a callback that holds the loop.
        gc.disable()
        loop.set_debug(True)  # from here on: the start (imports, migrations) is not the load
        rss_before = peak_rss_mb()
        posted_uploads: list[dict] = []
        first_round = asyncio.Event()  # every channel has 12 uploads to find

        async def post_uploads() -> None:
            for channel, member, data in uploads:
                attachment = (f"u{len(posted_uploads)}.png", data, "image/png")
                message = await server.post_message(channel, member, "", attachments=[attachment])
                posted_uploads.append(message)
                if len(posted_uploads) == 12 * CHANNELS:
                    first_round.set()
                await asyncio.sleep(1 / UPLOADS_PER_S)

        lag = LoopLag().__enter__()
        burst = asyncio.create_task(post_uploads())
        await first_round.wait()
        # something to find in every channel before the first `!find` there
        await indexed(bot, 12 * CHANNELS, timeout=60)
        started = time.monotonic()
        sent_at: dict[str, float] = {}
        expected: dict[str, tuple[int, str | None]] = {}
        for channel, member, content, attachment, caption in commands:
            attachments = [attachment] if attachment else []
            message = await server.post_message(channel, member, content, attachments=attachments)
            sent_at[message["id"]] = loop.time()
            expected[message["id"]] = (channel, caption)
            await asyncio.sleep(1 / COMMANDS_PER_S)
        await burst
        replies = {}
        for _ in commands:
            reply = await server.wait_for_sent(lambda e: "message_reference" in e, timeout=60)
            replies[reply["message_reference"]["message_id"]] = reply
        elapsed = time.monotonic() - started

        assert replies.keys() == expected.keys()
        for command_id, (channel, caption) in expected.items():
            reply = replies[command_id]
            if caption is not None:
                assert reply["content"] == caption
            else:
                assert reply["embeds"], reply["content"]
                found = int(reply["embeds"][0]["url"].rsplit("/", 1)[1])
                assert found in server.messages[channel]  # an image that exists, right there
        await indexed(bot, UPLOADS + len(commands) // 2, timeout=120)
        lag.__exit__()
        for message in posted_uploads:
            key = int(message["id"]), int(message["attachments"][0]["id"])
            assert await is_indexed(bot, *key)
        peak = peak_rss_mb()
        # The load ends here. Closing unloads the models with a full collection, which holds
        # the interpreter for 0.3-0.5 s with this process's heap (on the model thread, but no
        # thread runs Python meanwhile): the shutdown's, not a callback's.
        loop.set_debug(False)
        gc.enable()
    slow = [message for message in asyncio_reports(caplog) if "coro=<test_" not in message]

    latency = {c: replied_at[r["id"]] - sent_at[c] for c, r in replies.items()}
    p50, p95 = percentiles(list(latency.values()))
    invalid = server.invalid_requests
    print(
        f"\nload: {len(commands)} commands from {MEMBERS} members in {CHANNELS} channels + "
        f"{UPLOADS} uploads in {elapsed:.1f} s; reply latency p50 {p50:.2f} s, p95 {p95:.2f} s, "
        f"max {max(latency.values()):.2f} s; peak RSS {peak:.0f} MB ({peak - rss_before:+.0f} MB)"
        f"\n  {len(server.requests)} API requests, {len(invalid)} invalid "
        f"({sum(1 for *_, status in invalid if status == 429)} refused with 429)"
    )
    for kind, wanted in (("caption", True), ("find", False)):
        part = [t for c, t in latency.items() if (expected[c][1] is not None) == wanted]
        low, high = percentiles(part)
        print(f"  {kind:7} p50 {low:.2f} s, p95 {high:.2f} s")
    lags = sorted(lag.samples)
    print(f"  loop lag p99 {lags[math.ceil(0.99 * len(lags)) - 1]:.1f} ms, max {lags[-1]:.1f} ms")
    assert slow == [], slow[:5]
    assert p95 <= P95_LIMIT_S
    assert len(invalid) < INVALID_LIMIT, invalid[:10]


def asyncio_reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Debug mode's reports of callbacks that held the loop for over SLOW_CALLBACK_S; those of
    the test's own task (it builds the world and posts the load) are not the bot's."""
    return [r.getMessage() for r in caplog.records if r.name == "asyncio" and " took " in r.msg]


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p95 (nearest rank)."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[math.ceil(0.95 * len(ordered)) - 1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
