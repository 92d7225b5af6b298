"""Fresh URLs for queued images: attachment URLs expire and are never stored, so the indexer
asks Discord for the image's message again (message.mdx, "Get Channel Message")."""

from __future__ import annotations

import time

import aiohttp
import discord

from bot.chat import history
from bot.chat.access import ReadAccess
from bot.chat.sources import source_for
from bot.images.fetcher import ImageSource
from bot.index.refs import ImageRef
from bot.index.uploads import Unavailable

# A message's images are queued side by side and asked for one after another: the message
# fetched for the first serves the others (its URLs last hours), sparing a request each.
REUSE_S = 60.0


class FreshUrls:
    def __init__(
        self, client: discord.Client, access: ReadAccess, allowed_hosts: frozenset[str]
    ) -> None:
        self.client = client
        self.access = access
        self.allowed_hosts = allowed_hosts
        self._last: tuple[int, float, discord.Message] | None = None

    async def resolve(self, ref: ImageRef) -> ImageSource | None:
        """A fresh URL for a queued image, or None if it is gone. Raises Unavailable when
        Discord or the network fails for now."""
        if not self.access.can_read(ref.channel_id):
            return None
        message = await self._message(ref)
        if message is None:
            return None
        return source_for(message, ref.attachment_id, self.allowed_hosts)

    async def _message(self, ref: ImageRef) -> discord.Message | None:
        now = time.monotonic()
        if self._last is not None:
            message_id, fetched_at, message = self._last
            if message_id == ref.message_id and now - fetched_at < REUSE_S:
                return message
        try:
            found = await history.message_of(self.client, ref)
        except discord.NotFound:
            return None
        except discord.Forbidden:
            self.access.refused(ref.channel_id)
            return None
        except discord.HTTPException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise Unavailable(f"Discord answered HTTP {exc.status}") from exc
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"Discord could not be reached: {exc!r}") from exc
        self._last = (ref.message_id, now, found) if found is not None else None
        return found
