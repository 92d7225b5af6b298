"""Background posts take at most their share of a channel's message budget, in turn, and one
channel's pace never holds up another's."""

from __future__ import annotations

import asyncio
import time

from bot.chat.pacing import ChannelPace


async def test_at_most_limit_posts_per_period_in_one_channel() -> None:
    pace = ChannelPace(2, 0.5)
    started = time.monotonic()
    done: list[tuple[int, float]] = []

    async def post(channel: int) -> None:
        await pace.wait(channel)
        done.append((channel, time.monotonic() - started))

    await asyncio.gather(*(post(1) for _ in range(5)), post(2), post(2))
    in_one = [at for channel, at in done if channel == 1]
    assert [at < 0.25 for at in in_one] == [True, True, False, False, False]
    assert 0.5 <= in_one[2] < 0.9 and 0.5 <= in_one[3] < 0.9 and in_one[4] >= 1.0
    assert all(at < 0.25 for channel, at in done if channel == 2)


async def test_channels_quiet_for_a_period_are_forgotten() -> None:
    """Threads and forum posts keep arriving: a long run must not remember each for good."""
    now = [0.0]
    pace = ChannelPace(2, 5.0, clock=lambda: now[0])
    for channel in range(100):
        await pace.wait(channel)
    now[0] = 4.0
    await pace.wait(1000)
    assert len(pace._recent) == 101  # all within the period still
    now[0] = 10.0
    await pace.wait(1000)
    assert list(pace._recent) == [1000] and list(pace._turns) == [1000]
