"""An aiohttp app served on 127.0.0.1 for the length of a test: no test reaches further."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    """Serves `app` on a free port of 127.0.0.1 and yields the port. Requests still open at the
    end are cut off at once: some handlers here hold their answers on purpose."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
