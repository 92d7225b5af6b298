"""The composition root: `python -m bot run` makes every resource, wires them together, hands
them to the Discord client, and tears them down in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import yarl

from bot.chat.client import Glimpse
from bot.chat.sources import media_hosts
from bot.config import DEFAULT_API_URL, ConfigError, Settings
from bot.images.fetcher import MediaFetcher
from bot.images.loader import ImageLoader, limits_from
from bot.index.image_index import ImageIndex
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
        log.info("Discord API at %s, gateway at %s", discord.http.Route.BASE, gateway)


@contextlib.asynccontextmanager
async def create_bot(settings: Settings, **client_options: Any) -> AsyncIterator[Glimpse]:
    """Every resource the bot needs, made here and torn down in reverse; yields it unstarted."""
    point_at(settings.discord_api_url, settings.discord_gateway_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    workers = Workers()
    vision = VisionService(settings, workers)
    index = await ImageIndex.open(
        settings.data_dir / "index.sqlite3",
        settings.search_model,
        workers,
        per_channel=settings.index_per_channel,
        retention_days=settings.retention_days,
    )
    try:
        await vision.start()
        async with aiohttp.ClientSession() as session:
            loader = ImageLoader(workers, limits_from(settings))
            fetcher = MediaFetcher(session, loader, media_hosts(settings.discord_api_url))
            async with Glimpse(settings, vision, index, fetcher, **client_options) as bot:
                yield bot
    finally:
        await vision.close()
        await index.close()
        workers.shutdown(wait=False)


async def main(settings: Settings) -> None:
    """Runs until the bot is closed or SIGTERM/SIGINT arrives; raises ConfigError/ModelLoadError."""
    if settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN", "is required to run the bot (see .env.example)")
    async with create_bot(settings) as bot:
        _close_on_signals(bot)
        await bot.start(settings.discord_token.get())


def _close_on_signals(bot: Glimpse) -> None:
    loop = asyncio.get_running_loop()

    closing: list[asyncio.Task[None]] = []

    def close() -> None:
        log.info("shutting down")
        if not closing:
            closing.append(loop.create_task(bot.close()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, close)


def run(settings: Settings) -> int:
    """The CLI's entry: one clear line for the errors an admin can fix."""
    try:
        asyncio.run(main(settings))
    except (ConfigError, ModelLoadError) as exc:
        log.error("%s", exc)
        return 1
    except discord.LoginFailure:
        log.error("DISCORD_TOKEN: Discord rejected the token; copy it again from the portal")
        return 1
    except discord.PrivilegedIntentsRequired:
        log.error(
            "the Message Content intent is off: enable it under Bot > Privileged Gateway "
            "Intents in the Discord developer portal"
        )
        return 1
    return 0
