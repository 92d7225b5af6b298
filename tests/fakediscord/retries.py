"""discord.py waits 1 + 2*tries seconds before retrying a 5xx; tests need not."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import discord
import pytest


class _FastSleep(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(min(delay, 0.01), result)


def shorten_discord_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caps discord.http's back-off sleeps at 10 ms for the rest of the test."""
    monkeypatch.setattr(discord.http, "asyncio", _FastSleep("asyncio"))
