"""Ending a background task for sure, and work that must end even if its caller gives up."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancels `task` until it has ended. On Python 3.11, asyncio.wait_for can swallow a cancel
    that lands as its inner call finishes (CPython gh-86296); a task that awaits one inside a
    loop then runs on after a single cancel, and whoever awaited its end waited forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)


async def unabandoned(work: Coroutine[Any, Any, T]) -> T:
    """Runs `work` to its end in a task of its own, whether or not its caller stays for it: a
    model load, say, whose thread cannot be stopped midway and whose result the next caller
    would otherwise load again. Its failure is the callers' to hear, if any remain."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(retrieve)
    return await asyncio.shield(task)


def retrieve(future: asyncio.Future[Any]) -> None:
    """A done callback: reads the outcome, so that a failure no one awaited is not reported as
    never retrieved."""
    if not future.cancelled():
        future.exception()
