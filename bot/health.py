"""The heartbeat file: proof of life that a container health check can read for free.

While the bot is connected to the gateway and its model lane answers, `Heartbeat` touches
`DATA_DIR/heartbeat` every few seconds (written once, then only its time is updated). The
probe, `python -m bot.health`, only compares the file's age with a limit: it imports neither
torch nor transformers and loads no model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.tasks import cancel_until_done

if TYPE_CHECKING:
    from discord import Client

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "heartbeat"
INTERVAL_S = 5.0
# A caption batch of 16 on a slow CPU holds the model lane for tens of seconds; the no-op
# waits behind it, so only a lane stuck for longer than this counts as not answering.
LANE_TIMEOUT_S = 60.0
MAX_AGE_S = 60.0


class Heartbeat:
    """Writes the current time to `path` every `interval` seconds while `alive()` holds."""

    def __init__(
        self,
        client: Client,
        model_lane_free: Callable[[], Awaitable[None]],
        path: Path,
        *,
        interval: float = INTERVAL_S,
        lane_timeout: float = LANE_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.model_lane_free = model_lane_free
        self.path = path
        self.interval = interval
        self.lane_timeout = lane_timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begins beating; a file left by a killed predecessor no longer counts."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._task is None:
            self._task = asyncio.create_task(self._beat(), name="glimpse-heartbeat")

    async def stop(self) -> None:
        """Stops beating and removes the file: a stopped bot is not a healthy one."""
        if self._task is not None:
            task, self._task = self._task, None
            # `alive` awaits asyncio.wait_for, which can swallow a cancel (bot/tasks.py): one
            # cancel once left close() waiting on this loop forever.
            await cancel_until_done(task)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def alive(self) -> bool:
        """Connected to the gateway, and the model lane runs a no-op within `lane_timeout`.

        Models unloaded after idle still count: the lane answers, and the next request loads them.
        """
        client = self.client
        if client.is_closed() or not client.is_ready():
            return False
        ws = client.ws
        if ws is None or not ws.open or not math.isfinite(client.latency):
            return False
        try:
            await asyncio.wait_for(self.model_lane_free(), self.lane_timeout)
        except (TimeoutError, RuntimeError):  # stuck, or the worker threads are shut down
            return False
        return True

    async def _beat(self) -> None:
        while True:
            alive = await self.alive()
            if alive:
                try:
                    touch_heartbeat(self.path)
                except OSError as exc:
                    log.warning("cannot write the heartbeat file %s: %s", self.path, exc)
            # Until alive, look again soon: a fresh start turns healthy a second after READY.
            await asyncio.sleep(self.interval if alive else min(self.interval, 1.0))


def touch_heartbeat(path: Path) -> None:
    """Only the file's time counts (`heartbeat_age`): one system call on the event loop once
    the file exists, rather than the five of writing it afresh."""
    try:
        os.utime(path)
    except FileNotFoundError:
        write_heartbeat(path)


def write_heartbeat(path: Path, now: float | None = None) -> None:
    """Atomically: a reader never sees a half-written file."""
    stamp = time.time() if now is None else now
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{stamp:.3f}\n")
    os.utime(temporary, (stamp, stamp))
    os.replace(temporary, path)


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat, or None when there is no heartbeat file."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, (time.time() if now is None else now) - modified)


def data_dir_setting(env_file: Path = Path(".env")) -> Path:
    """DATA_DIR as the bot reads it (bot.config), read alone: the probe must not fail on
    another setting."""
    from bot.config import ConfigError, home_path, read_environment  # only here: dotenv

    try:
        raw = read_environment(env_file=env_file).get("DATA_DIR", "").strip() or "./data"
    except ConfigError:  # an unreadable .env: the environment alone
        raw = os.environ.get("DATA_DIR", "").strip() or "./data"
    try:
        return home_path(raw)
    except ValueError:  # no home folder to read ~ as: left as written
        return Path(raw)


def _seconds(text: str) -> float:
    """A positive, finite number: `nan` would be healthy for ever, as no age exceeds it."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds above 0 (got {text!r})")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bot.health`: the container health check; exit 0 when the heartbeat is fresh."""
    parser = argparse.ArgumentParser(prog="python -m bot.health", description=main.__doc__)
    parser.add_argument("--max-age", type=_seconds, default=MAX_AGE_S, metavar="SECONDS")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the bot keeps its state (default: DATA_DIR as the bot reads it, else ./data)",
    )
    args = parser.parse_args(argv)
    path = (args.data_dir or data_dir_setting()) / HEARTBEAT_FILE
    try:
        age = heartbeat_age(path)
    except OSError as exc:  # DATA_DIR a file, say, or not ours to read
        print(f"unhealthy: cannot read {path}: {exc.strerror or exc}")
        return 1
    if age is None:
        print(f"unhealthy: no heartbeat at {path}")
        return 1
    if age > args.max_age:
        print(f"unhealthy: last heartbeat {age:.0f} s ago (limit {args.max_age:.0f} s)")
        return 1
    print(f"healthy: last heartbeat {age:.1f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
