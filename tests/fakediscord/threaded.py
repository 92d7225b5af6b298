"""The test server on a thread and event loop of its own.

In the other tests the server shares the bot's event loop, so its work would count against the
bot in any measure of that loop. Behind this proxy the bot's loop does only the bot's (and the
test's) work: what the load test's loop-lag and slow-callback checks need. Every method runs on
the server's loop (coroutines are awaited from the caller's loop; plain methods block the
caller until done); attributes are read and set on the server itself.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from tests.fakediscord.server import FakeDiscord


class ThreadedServer:
    def __init__(self) -> None:
        object.__setattr__(self, "_loop", asyncio.new_event_loop())
        object.__setattr__(self, "_thread", threading.Thread(
            target=self._loop.run_forever, name="fakediscord", daemon=True))  # fmt: skip
        object.__setattr__(self, "_server", None)

    async def start(self) -> None:
        self._thread.start()
        server = await self._on_thread(self._make())
        object.__setattr__(self, "_server", server)

    async def stop(self) -> None:
        await self._on_thread(self._server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()

    @staticmethod
    async def _make() -> FakeDiscord:
        server = FakeDiscord()  # made on its loop: its futures and locks belong there
        await server.start()
        return server

    @property
    def inner(self) -> FakeDiscord:
        """The server itself, for what must run on its own thread (a hook it calls)."""
        return self._server  # type: ignore[no-any-return]

    def _on_thread(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._server, name)
        if inspect.iscoroutinefunction(value):

            async def awaited(*args: Any, **kwargs: Any) -> Any:
                return await self._on_thread(value(*args, **kwargs))

            return awaited
        if inspect.ismethod(value):
            return self._blocking(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._server, name, value)

    def _blocking(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is self._thread:
                return method(*args, **kwargs)

            async def run() -> Any:
                return method(*args, **kwargs)

            return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

        return call
