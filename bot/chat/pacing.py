"""Pacing the bot's own background posts in a channel (automatic descriptions, reposts pointed
out), so that they leave Discord's per-channel message budget (5 per 5 s: rate-limits.mdx) to
the answers to commands.

discord.py waits its turn for a channel's budget in the order requests were made: a burst of
automatic descriptions or repost replies there would make a `!caption` answered in the same
channel wait behind them. Posts paced here take at most `limit` of every `period` seconds in one
channel.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

# The share of a channel's budget that the bot's unasked posts take, all kinds together.
POSTS_PER_PERIOD, PERIOD_S = 2, 5.0


class ChannelPace:
    def __init__(
        self, limit: int, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._recent: dict[int, deque[float]] = {}
        self._turns: dict[int, asyncio.Lock] = {}

    async def wait(self, channel_id: int) -> None:
        """Returns when one more post fits in the channel's share; callers go in turn."""
        self._forget_quiet(self._clock())
        turn = self._turns.setdefault(channel_id, asyncio.Lock())
        async with turn:
            recent = self._recent.setdefault(channel_id, deque())
            while recent and self._clock() - recent[0] >= self.period:
                recent.popleft()
            if len(recent) >= self.limit:
                await asyncio.sleep(recent[0] + self.period - self._clock())
                recent.popleft()
            recent.append(self._clock())

    def _forget_quiet(self, now: float) -> None:
        """Channels (threads, forum posts) with no post in the last period: nothing of theirs
        is needed any more, and they keep arriving. A lock just released still has its post
        of a moment ago, so a caller woken by it is never left with a forgotten one."""
        for channel_id, recent in list(self._recent.items()):
            turn = self._turns[channel_id]
            if not turn.locked() and (not recent or now - recent[-1] >= self.period):
                del self._recent[channel_id], self._turns[channel_id]
