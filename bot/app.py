"""The composition root: `python -m bot run` makes every resource, wires them together, hands
them to the Discord client, and tears them down in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import discord
import yarl

from bot.chat.client import Glimpse
from bot.chat.connection import DiscordUnreachable, check_login, connect, shown
from bot.chat.sources import DISCORD_MEDIA_HOSTS
from bot.config import DEFAULT_API_URL, ConfigError, Settings
from bot.images.fetcher import MediaFetcher
from bot.images.loader import ImageLoader, limits_from
from bot.index.image_index import ImageIndex
from bot.index.schema import NewerSchema, OldSQLite
from bot.vision.checkpoints import ModelLoadError
from bot.vision.service import VisionService
from bot.workers import Workers

log = logging.getLogger(__name__)


def point_at(api_url: str, gateway_url: str | None) -> None:
    """Lets an admin put a REST or gateway proxy in front of Discord."""
    discord.http.Route.BASE = api_url
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    if api_url != DEFAULT_API_URL or gateway_url:
        gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        log.info("Discord API at %s, gateway at %s", shown(discord.http.Route.BASE), shown(gateway))


@contextlib.asynccontextmanager
async def create_bot(
    settings: Settings,
    before_loading: Callable[[], Awaitable[None]] | None = None,
    **client_options: Any,
) -> AsyncIterator[Glimpse]:
    """Every resource the bot needs, made here and torn down in reverse; yields it unstarted.
    `before_loading` runs once the checkpoints are found, before the models load."""
    point_at(settings.discord_api_url, settings.discord_gateway_url)
    workers = Workers()
    vision = VisionService(settings, workers)
    lock: IO[bytes] | None = None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = claim(settings.data_dir)
        # SQLite tells of a folder it may not write in only as "unable to open database file".
        tempfile.TemporaryFile(dir=settings.data_dir).close()
        index = await ImageIndex.open(
            settings.data_dir / "index.sqlite3",
            settings.search_model,
            workers,
            per_channel=settings.index_per_channel,
            retention_days=settings.retention_days,
        )
    except (OSError, sqlite3.Error, NewerSchema, OldSQLite) as exc:
        if lock is not None:
            lock.close()
        workers.shutdown(wait=False)
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("DATA_DIR", f"cannot use {str(settings.data_dir)!r}: {reason}") from None
    try:
        await vision.start(before_loading)
        async with aiohttp.ClientSession() as session:
            loader = ImageLoader(workers, limits_from(settings))
            fetcher = MediaFetcher(session, loader, DISCORD_MEDIA_HOSTS)
            try:
                async with Glimpse(settings, vision, index, fetcher, **client_options) as bot:
                    yield bot
            finally:
                await fetcher.close()
    finally:
        await vision.close()
        await index.close()
        workers.shutdown(wait=False)
        lock.close()


def claim(data_dir: Path) -> IO[bytes]:
    """DATA_DIR for this bot alone, while the returned file is open. A second one there (a
    `docker compose run` beside the service, say) would answer every command twice, on one
    token, and share the index and the heartbeat. The system drops the lock however the
    process ends, SIGKILL included."""
    lock = open(data_dir / ".lock", "a+b")  # noqa: SIM115 (held until create_bot ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise OSError(errno.EBUSY, "another Glimpse is running on it; stop it first") from None
    except OSError as exc:  # a file system without locks (some network and FUSE mounts)
        log.warning("DATA_DIR: cannot lock %s (%s); not guarded against a second bot", data_dir,
                    exc.strerror or exc)  # fmt: skip
    return lock


class Stopper:
    """SIGTERM and SIGINT from the first moment of `run`: until the bot is connected they cancel
    the start wherever it is (loading models, logging in); once it is, they close it gracefully.
    A model load cannot be interrupted and is waited for; a second signal stops at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.bot: Glimpse | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        # signal.signal rather than the loop's add_signal_handler: these handlers are in place
        # before the loop starts and until it has finished tearing down. A signal the parent
        # ignores (Ctrl-C for a shell's background job) stays ignored.
        previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        for sig, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def watch(self) -> None:
        """Called first thing in the loop: the task a signal cancels."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()  # type: ignore[assignment]
        if self.signal is not None:
            self._stop()

    @property
    def exit_status(self) -> int:
        return 130 if self.signal == signal.SIGINT else 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.signal is not None:
            sys.stderr.flush()
            os._exit(self.exit_status)  # skips waiting for the worker threads, as asked twice
        self.signal = signum
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop)

    def _stop(self) -> None:
        log.info("shutting down")
        if self.bot is not None and self.bot.is_ready():
            if self._closing is None:  # kept, or the task could be collected before it ends
                self._closing = asyncio.create_task(self.bot.close())
        elif self._task is not None:
            self._task.cancel()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
TOKEN_REJECTED = "DISCORD_TOKEN: Discord rejected the token; copy it again from the portal"
AUTHENTICATION_FAILED = 4004  # opcodes-and-status-codes.mdx, "Gateway Close Event Codes"


async def main(settings: Settings, stopper: Stopper) -> None:
    """Runs until the bot is closed or stopped; raises ConfigError, ModelLoadError,
    DiscordUnreachable, or discord.py's LoginFailure and PrivilegedIntentsRequired."""
    stopper.watch()
    if settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN", "is required to run the bot (see .env.example)")
    token, timeout = settings.discord_token.get(), settings.discord_connect_timeout_s
    async with create_bot(settings, functools.partial(check_login, token, timeout)) as bot:
        stopper.bot = bot
        await connect(bot, token, timeout)


def run(settings: Settings) -> int:
    """The CLI's entry: one line for each error an admin can fix; 0 after SIGTERM, 130 after
    Ctrl-C, whenever it comes."""
    stopper = Stopper()
    with stopper.installed():
        try:
            asyncio.run(main(settings, stopper))
        except asyncio.CancelledError:
            if stopper.signal is None:
                raise
        except (ConfigError, ModelLoadError, DiscordUnreachable) as exc:
            return fatal(str(exc))
        except discord.LoginFailure:
            return fatal(TOKEN_REJECTED)
        except discord.ConnectionClosed as exc:  # a close discord.py will not reconnect after
            if exc.code == AUTHENTICATION_FAILED:  # the token was reset while the bot ran
                return fatal(TOKEN_REJECTED)
            return fatal(f"Discord closed the connection for good: {exc.code} {exc.reason}")
        except discord.PrivilegedIntentsRequired:
            return fatal(
                "the Message Content intent is off: enable it under Bot > Privileged Gateway "
                "Intents in the Discord developer portal"
            )
    return stopper.exit_status


def fatal(message: str) -> int:
    """The last line before the bot stops; `error: ` like the rest of the command line."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1
