"""Downloads of images that Discord told us about, and nothing else."""

from __future__ import annotations

import logging

import aiohttp
from yarl import URL

from bot import wording
from bot.images.decode import too_large

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10, sock_read=15)
CHUNK = 64 * 1024


class DownloadError(Exception):
    """The image could not be fetched; the message is for the user.

    `transient`: the network or Discord failed for now (timeouts, connection errors, 5xx,
    429), so a later try may work; otherwise the image is gone or was refused.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


async def download(
    session: aiohttp.ClientSession,
    url: str,
    max_bytes: int,
    *,
    allowed_hosts: frozenset[str] | None = None,
) -> bytes:
    """Streams `url` into memory, refusing more than `max_bytes` whatever the server declares.

    Redirects are not followed: a Discord attachment or proxy URL answers directly, and a
    redirect elsewhere is exactly what a hostile embed would try.
    """
    target = URL(url)
    if target.scheme not in ("http", "https"):
        raise DownloadError(wording.LINK_NOT_WEB)
    if allowed_hosts is not None and target.host not in allowed_hosts:
        raise DownloadError(wording.HOST_NOT_DISCORD)
    try:
        async with session.get(target, allow_redirects=False, timeout=DOWNLOAD_TIMEOUT) as resp:
            if resp.status in (403, 404, 410):
                raise DownloadError(wording.IMAGE_GONE)
            if resp.status != 200:
                busy = resp.status == 429 or resp.status >= 500
                raise DownloadError(wording.fetch_refused(resp.status), transient=busy)
            declared = resp.content_length
            if declared is not None and declared > max_bytes:
                raise too_large(declared, max_bytes)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise too_large(None, max_bytes)
            return bytes(data)
    except TimeoutError:
        raise DownloadError(wording.FETCH_TIMED_OUT, transient=True) from None
    except aiohttp.ClientError as exc:
        log.info("download of %s failed: %s", target.with_query(None), exc)
        raise DownloadError(wording.FETCH_FAILED, transient=True) from None
