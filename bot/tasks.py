"""Ending a background task for sure."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancels `task` until it has ended. On Python 3.11, asyncio.wait_for can swallow a cancel
    that lands as its inner call finishes (CPython gh-86296); a task that awaits one inside a
    loop then runs on after a single cancel, and whoever awaited its end waited forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
