"""Fresh URLs for queued images: attachment URLs expire and are never stored, so the indexer
asks Discord for the image's message again (message.mdx, "Get Channel Message")."""

from __future__ import annotations

import time
from collections import OrderedDict

import aiohttp
import discord

from bot.chat import history
from bot.chat.access import ReadAccess
from bot.chat.sources import source_for
from bot.images.fetcher import ImageSource
from bot.index.refs import ImageRef
from bot.index.uploads import NoAccess, Unavailable

# A message's images are queued side by side and asked for one after another (give or take
# the batch's parallel downloads): the message fetched for the first serves the others (its
# URLs last hours), sparing a request each.
REUSE_S = 60.0
KEPT = 8  # messages, as many as a batch downloads at once


class FreshUrls:
    def __init__(
        self, client: discord.Client, access: ReadAccess, allowed_hosts: frozenset[str]
    ) -> None:
        self.client = client
        self.access = access
        self.allowed_hosts = allowed_hosts
        self._recent: OrderedDict[int, tuple[float, discord.Message]] = OrderedDict()

    async def resolve(self, ref: ImageRef) -> ImageSource | None:
        """A fresh URL for a queued image, or None if it is gone. Raises Unavailable when
        Discord or the network fails for now, NoAccess while the bot cannot read there."""
        if not self.access.can_read(ref.channel_id):
            raise NoAccess(f"no access to channel {ref.channel_id}")
        message = await self._message(ref)
        if message is None:
            return None
        return source_for(message, ref.attachment_id, self.allowed_hosts)

    async def _message(self, ref: ImageRef) -> discord.Message | None:
        now = time.monotonic()
        kept = self._recent.get(ref.message_id)
        if kept is not None and now - kept[0] < REUSE_S:
            return kept[1]
        try:
            found = await history.message_of(self.client, ref)
        except discord.NotFound:
            return None
        except discord.Forbidden:
            self.access.refused(ref.channel_id)
            raise NoAccess(f"no access to channel {ref.channel_id}") from None
        except discord.HTTPException as exc:
            if history.for_now(exc):
                raise Unavailable(f"Discord answered HTTP {exc.status}") from exc
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"Discord could not be reached: {exc!r}") from exc
        if found is not None:
            self._recent[ref.message_id] = (now, found)
            self._recent.move_to_end(ref.message_id)
            while len(self._recent) > KEPT:
                self._recent.popitem(last=False)
        return found
