"""The model lane's scheduler: batching, priorities, back-pressure, failures and cancellation.

A fake runner records every batch and can be held on an asyncio.Event, so the tests decide
what is queued while a batch runs; nothing sleeps more than a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from typing import Any

import pytest

from bot.errors import UserError
from bot.vision.scheduler import BACKGROUND, INTERACTIVE, Busy, Scheduler

WAIT_S = 0.01


class Runner:
    """Records batches, answers `"{key}:{item}"` per item, and can be held or made to fail."""

    def __init__(self, name: str = "caption") -> None:
        self.name = name
        self.batches: list[tuple[Hashable, list[Any]]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()
        self.fail_on: set[Any] = set()

    def hold(self) -> None:
        self.release.clear()
        self.started.clear()

    async def __call__(self, key: Hashable, items: list[Any]) -> list[Any]:
        self.batches.append((key, list(items)))
        self.started.set()
        await self.release.wait()
        if self.fail_on & set(items):
            raise RuntimeError(f"model failed on {sorted(self.fail_on & set(items))}")
        return [f"{self.name}/{key}:{item}" for item in items]

    @property
    def sizes(self) -> list[int]:
        return [len(items) for _, items in self.batches]


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    lane = Scheduler(max_batch=4, wait_s=WAIT_S, max_pending=16)
    yield lane
    await lane.close()


@pytest.fixture
def runner(scheduler: Scheduler) -> Runner:
    fake = Runner()
    scheduler.register("caption", fake)
    return fake


async def settle() -> None:
    """Let every ready task run up to its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def occupy(scheduler: Scheduler, runner: Runner) -> asyncio.Task[Any]:
    """Holds the lane with a running batch, so that whatever comes next queues up."""
    runner.hold()
    task = asyncio.create_task(scheduler.submit("caption", "busy", "first"))
    await asyncio.wait_for(runner.started.wait(), 1)
    return task


async def test_concurrent_requests_of_one_kind_and_key_run_as_one_batch(
    scheduler: Scheduler, runner: Runner
) -> None:
    results = await asyncio.gather(*(scheduler.submit("caption", "p", i) for i in range(4)))
    assert runner.batches == [("p", [0, 1, 2, 3])]
    assert results == [f"caption/p:{i}" for i in range(4)]
    assert scheduler.stats["caption"].mean == 4


async def test_batches_hold_at_most_max_batch(scheduler: Scheduler, runner: Runner) -> None:
    results = await asyncio.gather(*(scheduler.submit("caption", "p", i) for i in range(10)))
    assert runner.sizes == [4, 4, 2]
    assert sorted(item for _, items in runner.batches for item in items) == list(range(10))
    assert results == [f"caption/p:{i}" for i in range(10)]
    assert scheduler.stats["caption"].mean == pytest.approx(10 / 3)


async def test_a_lone_request_runs_after_the_short_wait(
    scheduler: Scheduler, runner: Runner
) -> None:
    assert await asyncio.wait_for(scheduler.submit("caption", "p", "solo"), 1) == "caption/p:solo"
    assert runner.sizes == [1]


async def test_different_keys_and_kinds_never_share_a_batch(
    scheduler: Scheduler, runner: Runner
) -> None:
    embed = Runner("embed")
    scheduler.register("embed", embed)
    submits = [
        scheduler.submit(kind, key, f"{kind}-{key}-{i}")
        for i in range(3)
        for kind in ("caption", "embed")
        for key in ("a red", "a blue")
    ]
    results = await asyncio.gather(*submits)
    for fake in (runner, embed):
        assert sorted(str(key) for key, _ in fake.batches) == ["a blue", "a red"]
        for key, items in fake.batches:
            assert items == [f"{fake.name}-{key}-{i}" for i in range(3)]
    # Each caller gets the answer to its own item.
    expected = [
        f"{kind}/{key}:{kind}-{key}-{i}"
        for i in range(3)
        for kind in ("caption", "embed")
        for key in ("a red", "a blue")
    ]
    assert results == expected


async def test_a_failed_batch_fails_each_of_its_waiters_and_the_next_batch_works(
    scheduler: Scheduler, runner: Runner
) -> None:
    busy = await occupy(scheduler, runner)
    runner.fail_on = {"bad"}
    doomed = [asyncio.create_task(scheduler.submit("caption", "p", i)) for i in ("ok", "bad")]
    bystander = asyncio.create_task(scheduler.submit("caption", "q", "fine"))
    await settle()
    runner.release.set()
    outcomes = await asyncio.gather(*doomed, return_exceptions=True)
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
    assert outcomes[0] is outcomes[1]
    assert "model failed on ['bad']" in str(outcomes[0])
    assert await bystander == "caption/q:fine"
    assert await busy == "caption/busy:first"
    runner.fail_on = set()
    assert await scheduler.submit("caption", "p", "again") == "caption/p:again"


async def test_an_unregistered_kind_fails_its_caller_only(
    scheduler: Scheduler, runner: Runner
) -> None:
    with pytest.raises(KeyError):
        await scheduler.submit("transcribe", "p", 1)
    assert await scheduler.submit("caption", "p", 1) == "caption/p:1"


async def test_interactive_requests_queued_after_background_ones_run_first(
    scheduler: Scheduler, runner: Runner
) -> None:
    busy = await occupy(scheduler, runner)
    background = [
        asyncio.create_task(scheduler.submit("caption", f"index-{i}", i, priority=BACKGROUND))
        for i in range(3)
    ]
    await settle()
    interactive = [
        asyncio.create_task(scheduler.submit("caption", f"user-{i}", i, priority=INTERACTIVE))
        for i in range(2)
    ]
    await settle()
    runner.release.set()
    await asyncio.gather(busy, *interactive, *background)
    assert [key for key, _ in runner.batches] == [
        "busy",
        "user-0",
        "user-1",
        "index-0",
        "index-1",
        "index-2",
    ]


async def test_background_work_waits_out_interactive_load_then_completes(
    scheduler: Scheduler,
) -> None:
    ran: list[str] = []
    load: list[asyncio.Task[Any]] = []

    async def run(key: Hashable, items: list[Any]) -> list[Any]:
        ran.append(str(key))
        if str(key).startswith("user-") and (wave := int(str(key)[5:])) < 4:
            # Users keep asking: the next request is queued before this batch ends.
            load.append(asyncio.create_task(scheduler.submit("caption", f"user-{wave + 1}", 0)))
            await settle()
        return items

    scheduler.register("caption", run)
    first = asyncio.create_task(scheduler.submit("caption", "user-0", 0))
    indexing = asyncio.create_task(
        scheduler.submit("caption", "index", "old image", priority=BACKGROUND)
    )
    assert await asyncio.wait_for(indexing, 1) == "old image"
    await asyncio.gather(first, *load)
    assert ran == ["user-0", "user-1", "user-2", "user-3", "user-4", "index"]


async def test_background_requests_join_a_batch_of_the_same_key(
    scheduler: Scheduler, runner: Runner
) -> None:
    busy = await occupy(scheduler, runner)
    later = asyncio.create_task(scheduler.submit("caption", "p", "bg", priority=BACKGROUND))
    now = asyncio.create_task(scheduler.submit("caption", "p", "user"))
    await settle()
    runner.release.set()
    assert await asyncio.gather(busy, now, later) == [
        "caption/busy:first",
        "caption/p:user",
        "caption/p:bg",
    ]
    assert runner.batches[1] == ("p", ["user", "bg"])


async def test_busy_beyond_max_pending_with_a_readable_message(runner: Runner) -> None:
    scheduler = Scheduler(max_batch=4, wait_s=WAIT_S, max_pending=2)
    scheduler.register("caption", runner)
    try:
        busy = await occupy(scheduler, runner)
        waiting = [asyncio.create_task(scheduler.submit("caption", "p", i)) for i in range(2)]
        await settle()
        with pytest.raises(Busy) as error:
            await asyncio.wait_for(scheduler.submit("caption", "p", "one too many"), 1)
        assert isinstance(error.value, UserError)
        assert str(error.value) == (
            "I'm busy with other requests right now; try again in a moment."
        )
        # Indexing is never turned away; it waits its turn.
        background = asyncio.create_task(
            scheduler.submit("caption", "index", "x", priority=BACKGROUND)
        )
        await settle()
        runner.release.set()
        assert await asyncio.gather(*waiting) == ["caption/p:0", "caption/p:1"]
        assert await background == "caption/index:x"
        assert await busy == "caption/busy:first"
        assert await scheduler.submit("caption", "p", "room again") == "caption/p:room again"
    finally:
        await scheduler.close()


async def test_a_cancelled_waiter_does_not_break_the_others(
    scheduler: Scheduler, runner: Runner
) -> None:
    busy = await occupy(scheduler, runner)
    queued = [asyncio.create_task(scheduler.submit("caption", "p", i)) for i in range(3)]
    await settle()
    queued[1].cancel()
    runner.release.set()
    assert await asyncio.gather(queued[0], queued[2]) == ["caption/p:0", "caption/p:2"]
    assert queued[1].cancelled()
    assert runner.batches[1] == ("p", [0, 2])
    assert await busy == "caption/busy:first"


async def test_a_waiter_cancelled_while_its_batch_runs_leaves_the_rest_intact(
    scheduler: Scheduler, runner: Runner
) -> None:
    runner.hold()
    tasks = [asyncio.create_task(scheduler.submit("caption", "p", i)) for i in range(3)]
    await asyncio.wait_for(runner.started.wait(), 1)
    tasks[0].cancel()
    runner.release.set()
    assert await asyncio.gather(tasks[1], tasks[2]) == ["caption/p:1", "caption/p:2"]
    assert tasks[0].cancelled()
    assert await scheduler.submit("caption", "p", "next") == "caption/p:next"


async def test_close_cancels_running_and_queued_waiters(runner: Runner) -> None:
    scheduler = Scheduler(max_batch=4, wait_s=WAIT_S, max_pending=8)
    scheduler.register("caption", runner)
    running = await occupy(scheduler, runner)
    queued = [
        asyncio.create_task(scheduler.submit("caption", "p", 1)),
        asyncio.create_task(scheduler.submit("caption", "q", 2, priority=BACKGROUND)),
    ]
    await settle()
    await asyncio.wait_for(scheduler.close(), 1)
    outcomes = await asyncio.gather(running, *queued, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    assert runner.sizes == [1]  # nothing else started


async def test_close_ends_the_lane_when_a_request_comes_as_it_closes(runner: Runner) -> None:
    """A request arrives while the lane waits to fill a batch, and the close comes before the
    lane has woken: on Python 3.11, asyncio.wait_for then swallows the cancel (CPython
    gh-86296), and a close that cancelled once waited for the lane forever."""
    scheduler = Scheduler(max_batch=4, wait_s=10.0, max_pending=8)
    scheduler.register("caption", runner)
    first = asyncio.create_task(scheduler.submit("caption", "p", 1))
    await settle()  # the lane waits for more of key "p", up to 10 s
    second = asyncio.create_task(scheduler.submit("caption", "p", 2))
    await asyncio.sleep(0)  # the second is queued, and has woken the lane's wait
    await asyncio.wait_for(scheduler.close(), 5)
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    assert runner.sizes == []


async def test_cancelled_waiters_do_not_count_towards_max_pending(runner: Runner) -> None:
    scheduler = Scheduler(max_batch=4, wait_s=WAIT_S, max_pending=2)
    scheduler.register("caption", runner)
    try:
        busy = await occupy(scheduler, runner)
        gave_up = [asyncio.create_task(scheduler.submit("caption", "p", i)) for i in range(2)]
        await settle()
        for task in gave_up:
            task.cancel()
        await settle()
        fresh = asyncio.create_task(scheduler.submit("caption", "p", "fresh"))
        await settle()
        runner.release.set()
        assert await fresh == "caption/p:fresh"
        await busy
    finally:
        await scheduler.close()


async def test_a_runner_breaking_its_contract_fails_its_waiters_and_the_lane_goes_on(
    scheduler: Scheduler,
) -> None:
    async def short(key: Hashable, items: list[Any]) -> list[Any]:
        return items[:-1]

    async def fine(key: Hashable, items: list[Any]) -> list[Any]:
        return items

    scheduler.register("short", short)
    scheduler.register("fine", fine)
    broken = [asyncio.create_task(scheduler.submit("short", "k", i)) for i in range(2)]
    queued = asyncio.create_task(scheduler.submit("fine", "k", "after"))
    done, pending = await asyncio.wait([*broken, queued], timeout=0.2)
    for task in pending:  # what hangs today
        task.cancel()
    assert queued in done and queued.result() == "after"
    assert all(task in done and task.exception() is not None for task in broken)


class Countdown:
    """A stepper whose item is the number of steps it needs; answers `"done:{item}"`."""

    def __init__(self) -> None:
        self.left: dict[int, int] = {}
        self.items: dict[int, Any] = {}
        self.steps: list[list[Any]] = []  # the items in flight at each step
        self.fail_next = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.stepped = asyncio.Condition()

    @property
    def busy(self) -> bool:
        return bool(self.left)

    async def join(self, items: list[tuple[int, Any]]) -> list[tuple[int, BaseException]]:
        failed: list[tuple[int, BaseException]] = []
        for ticket, item in items:
            if item == "bad":
                failed.append((ticket, ValueError("bad item")))
            else:
                self.left[ticket], self.items[ticket] = item, item
        return failed

    async def step(self) -> list[tuple[int, Any]]:
        await self.gate.wait()
        await asyncio.sleep(0.002)  # a step takes a while on the model lane
        self.steps.append(sorted(self.items[t] for t in self.left))
        async with self.stepped:
            self.stepped.notify_all()
        if self.fail_next:
            self.fail_next = False
            self.left.clear()
            raise RuntimeError("the step failed")
        ended = []
        for ticket in list(self.left):
            self.left[ticket] -= 1
            if self.left[ticket] == 0:
                del self.left[ticket]
                ended.append((ticket, f"done:{self.items[ticket]}"))
        return ended

    def leave(self, tickets: Any) -> None:
        for ticket in list(tickets):
            self.left.pop(ticket, None)


@pytest.fixture
def countdown(scheduler: Scheduler) -> Countdown:
    stepper = Countdown()
    scheduler.register_stepper("caption", stepper)
    return stepper


async def steps_pass(stepper: Countdown, count: int) -> None:
    target = len(stepper.steps) + count
    async with stepper.stepped:
        await stepper.stepped.wait_for(lambda: len(stepper.steps) >= target)


async def test_a_request_joins_the_running_steps_and_leaves_when_it_ends(
    scheduler: Scheduler, countdown: Countdown
) -> None:
    long = asyncio.create_task(scheduler.submit("caption", None, 10))
    await steps_pass(countdown, 3)
    short = asyncio.create_task(scheduler.submit("caption", "another prompt", 2))
    assert await short == "done:2"
    assert not long.done(), "the newcomer waited for the whole batch"
    assert await long == "done:10"
    assert [10, 2] in [sorted(s, reverse=True) for s in countdown.steps]
    assert countdown.steps[-1] == [10]  # the short one left the batch the step it ended
    assert len(countdown.steps) == 10
    assert scheduler.stats["caption"].mean == pytest.approx(12 / 10)


async def test_no_more_than_max_batch_in_flight(scheduler: Scheduler, countdown: Countdown) -> None:
    results = await asyncio.gather(*(scheduler.submit("caption", None, 3) for _ in range(6)))
    assert results == ["done:3"] * 6
    assert max(len(s) for s in countdown.steps) == 4  # max_batch
    assert len(countdown.steps) == 3 + 3  # the last two joined as the first four ended


async def test_a_failed_join_fails_that_request_only(
    scheduler: Scheduler, countdown: Countdown
) -> None:
    good = asyncio.create_task(scheduler.submit("caption", None, 2))
    with pytest.raises(ValueError, match="bad item"):
        await scheduler.submit("caption", None, "bad")
    assert await good == "done:2"


async def test_a_failed_step_fails_everything_in_flight_and_the_next_request_works(
    scheduler: Scheduler, countdown: Countdown
) -> None:
    countdown.gate.clear()
    doomed = [asyncio.create_task(scheduler.submit("caption", None, 5)) for _ in range(2)]
    await settle()
    countdown.fail_next = True
    countdown.gate.set()
    outcomes = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    assert await scheduler.submit("caption", None, 1) == "done:1"


async def test_a_caller_who_gives_up_leaves_at_the_next_step(
    scheduler: Scheduler, countdown: Countdown
) -> None:
    stays = asyncio.create_task(scheduler.submit("caption", None, 6))
    quits = asyncio.create_task(scheduler.submit("caption", None, 100))
    await steps_pass(countdown, 2)
    quits.cancel()
    assert await stays == "done:6"
    assert countdown.steps[-1] == [6] and len(countdown.steps) == 6
    assert scheduler.idle


async def test_interactive_batches_run_between_steps_and_indexing_waits(
    scheduler: Scheduler, countdown: Countdown
) -> None:
    text = Runner("text")
    scheduler.register("text", text)
    decoding = asyncio.create_task(scheduler.submit("caption", None, 30))
    await steps_pass(countdown, 2)
    assert not scheduler.idle
    indexing = asyncio.create_task(scheduler.submit("text", "i", "old", priority=BACKGROUND))
    await steps_pass(countdown, 2)
    assert await scheduler.submit("text", "q", "parrots") == "text/q:parrots"
    assert not decoding.done(), "the query waited for the caption to finish"
    assert not indexing.done(), "indexing ran while a caption was decoding"
    assert await decoding == "done:30"
    assert await indexing == "text/i:old"


async def test_indexing_of_the_same_kind_does_not_ride_along_between_steps(
    scheduler: Scheduler, countdown: Countdown
) -> None:
    """A `!find` by example embeds its image as indexing does (same kind, same key): the
    photos queued for indexing stay queued, rather than holding every caption's next step."""
    images = Runner("image")
    scheduler.register("image", images)
    decoding = asyncio.create_task(scheduler.submit("caption", None, 30))
    await steps_pass(countdown, 2)
    indexing = asyncio.create_task(scheduler.submit("image", None, "old", priority=BACKGROUND))
    await steps_pass(countdown, 2)
    assert await scheduler.submit("image", None, "example") == "image/None:example"
    assert images.batches == [(None, ["example"])], "indexing ran while a caption was decoding"
    assert await decoding == "done:30"
    assert await indexing == "image/None:old"


async def test_indexing_runs_between_the_steps_of_background_captions(
    scheduler: Scheduler, countdown: Countdown
) -> None:
    text = Runner("text")
    scheduler.register("text", text)
    describing = asyncio.create_task(scheduler.submit("caption", None, 40, priority=BACKGROUND))
    await steps_pass(countdown, 2)
    indexing = asyncio.create_task(scheduler.submit("text", "i", "old", priority=BACKGROUND))
    assert await indexing == "text/i:old"
    assert not describing.done(), "indexing waited for the automatic description to finish"
    asker = asyncio.create_task(scheduler.submit("caption", None, 3))
    await steps_pass(countdown, 1)
    later = asyncio.create_task(scheduler.submit("text", "i", "new", priority=BACKGROUND))
    await steps_pass(countdown, 1)
    assert not later.done(), "indexing ran while a member's caption was decoding"
    assert await asker == "done:3"
    assert await later == "text/i:new"
    assert await describing == "done:40"
