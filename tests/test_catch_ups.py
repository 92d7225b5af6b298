"""`CatchUps` with a stand-in for the reading itself: which `before` each catch-up gets, and
when one that Discord failed on for some channels runs again."""

from __future__ import annotations

import asyncio
import itertools
import types

import discord
import pytest

from bot.chat import catching_up
from bot.chat.catching_up import CatchUps
from bot.chat.history import CatchUpIncomplete, Unread
from bot.chat.read_marks import ReadMarks
from bot.index.store import ReadMark
from tests.e2e.harness import eventually


def read_marks(written: list[list[ReadMark]]) -> ReadMarks:
    """Real read marks over an index that records what is written to it."""

    async def mark_read(marks: list[ReadMark]) -> None:
        written.append(marks)

    index = types.SimpleNamespace(mark_read=mark_read)
    return ReadMarks(types.SimpleNamespace(holding=False, index=index), ())  # type: ignore[arg-type]


def snowflake_now() -> int:
    return discord.utils.time_snowflake(discord.utils.utcnow())


async def test_only_the_sessions_own_catch_up_reads_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From READY on, messages arrive as events; a server back from an outage later, or a
    retry, must read up to its own time: what came meanwhile there never arrived."""
    monkeypatch.setattr(catching_up, "RETRY_S", 0.05)
    asked: list[tuple[int, frozenset[int] | None]] = []

    async def catch_up(before: int, guilds: frozenset[int] | None, unread: Unread) -> int:
        asked.append((before, guilds))
        if len(asked) == 2:
            raise OSError("connection reset")
        return 0

    async def asked_at_least(n: int) -> bool:
        return len(asked) >= n

    catch_ups = CatchUps(catch_up, read_marks([]))
    catch_ups.new_session()
    ready = snowflake_now()
    await asyncio.sleep(0.05)
    catch_ups.start()  # on_ready, a moment after READY
    await eventually(lambda: asked_at_least(1))
    assert asked[0][0] <= ready
    await asyncio.sleep(0.05)
    outage_over = snowflake_now()
    catch_ups.start(7)  # fails, so it is tried again
    await eventually(lambda: asked_at_least(3))
    assert asked[1][0] >= outage_over and asked[1][1] == frozenset({7})
    assert asked[2][0] > asked[1][0] and asked[2][1] is None  # the retry, from its own time
    await catch_ups.close()


async def test_channels_discord_failed_on_are_read_again_less_often_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retries back off, up to a cap; the other channels' marks are written meanwhile."""
    monkeypatch.setattr(catching_up, "RETRY_S", 0.05)
    monkeypatch.setattr(catching_up, "RETRY_CAP_S", 0.2)
    times: list[float] = []
    loop = asyncio.get_running_loop()

    async def catch_up(before: int, guilds: frozenset[int] | None, unread: Unread) -> int:
        times.append(loop.time())
        raise CatchUpIncomplete([42])

    async def tried_five_times() -> bool:
        return len(times) >= 5

    written: list[list[ReadMark]] = []
    marks = read_marks(written)
    catch_ups = CatchUps(catch_up, marks)
    catch_ups.new_session()
    marks.put_back([(1, 2, None, 3)])  # a channel read all along
    catch_ups.start()
    await eventually(tried_five_times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2 and gaps[3] < 0.35, gaps
    assert [(1, 2, None, 3)] in written
    await catch_ups.close()


async def test_a_retry_reads_down_to_where_the_failed_catch_ups_began(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed catch-up leaves every channel unread from its start, an incomplete one the
    channels Discord failed on; a full catch-up that reads them clears what it read."""
    monkeypatch.setattr(catching_up, "RETRY_S", 0.05)
    asked: list[tuple[int, Unread]] = []
    outcomes = [OSError("connection reset"), CatchUpIncomplete([42])]

    async def catch_up(before: int, guilds: frozenset[int] | None, unread: Unread) -> int:
        asked.append((before, Unread(unread.everywhere, dict(unread.channels))))
        if outcomes:
            raise outcomes.pop(0)
        return 0

    async def asked_at_least(n: int) -> bool:
        return len(asked) >= n

    catch_ups = CatchUps(catch_up, read_marks([]))
    catch_ups.new_session()
    catch_ups.start()
    await eventually(lambda: asked_at_least(3))  # failed, then incomplete, then read
    await asyncio.sleep(0.01)
    catch_ups.start(7)
    await eventually(lambda: asked_at_least(4))
    (first, nothing), (second, failed), (third, incomplete), (_, cleared) = asked
    assert nothing == Unread() and cleared == Unread()
    assert failed == Unread(first) and first < second < third
    assert incomplete == Unread(None, {42: first})
    assert incomplete.below(third, 42) == first and incomplete.below(third, 7) == third
    await catch_ups.close()
