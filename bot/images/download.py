"""Downloads of images that Discord told us about, and nothing else."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
from yarl import URL

from bot import wording
from bot.images.errors import too_large

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10, sock_read=15)
CHUNK = 64 * 1024
# A refusal for now (429, 5xx) or a failed connection is tried again after these pauses, since
# a caption or a description has no later try of its own; a timeout is not, having taken its
# time already. A 429 asking for a longer wait than MAX_RETRY_AFTER_S is not waited out.
RETRY_PAUSES_S = (0.5, 2.0)
MAX_RETRY_AFTER_S = 5.0
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # Retry-After's delay-seconds


class DownloadError(Exception):
    """The image could not be fetched; the message is for the user.

    `transient`: the network or Discord failed for now (timeouts, connection errors, 5xx,
    429), so a later try may work; otherwise the image is gone or was refused.
    """

    def __init__(
        self, message: str, *, transient: bool = False, again_in: float | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        # How soon one more try may work: None when not at once (gone, refused, or it timed
        # out, which has taken its time already); a 429's Retry-After; 0 for the rest.
        self.again_in = again_in


async def download(
    session: aiohttp.ClientSession,
    url: str,
    max_bytes: int,
    *,
    allowed_hosts: frozenset[str] | None = None,
) -> bytes:
    """Streams `url` into memory, refusing more than `max_bytes` whatever the server declares,
    and tries again after a refusal for now (RETRY_PAUSES_S)."""
    for pause in RETRY_PAUSES_S:
        try:
            return await _download_once(session, url, max_bytes, allowed_hosts=allowed_hosts)
        except DownloadError as exc:
            if exc.again_in is None or exc.again_in > MAX_RETRY_AFTER_S:
                raise
            wait = max(pause, exc.again_in)
            log.info("download of %s failed (%s); trying again in %.1f s", _shown(url), exc, wait)
            await asyncio.sleep(wait)
    return await _download_once(session, url, max_bytes, allowed_hosts=allowed_hosts)


def _shown(url: str) -> URL:
    return URL(url).with_query(None)  # (a signed URL's query is a credential of sorts)


async def _download_once(
    session: aiohttp.ClientSession,
    url: str,
    max_bytes: int,
    *,
    allowed_hosts: frozenset[str] | None = None,
) -> bytes:
    """One try. Redirects are not followed: a Discord attachment or proxy URL answers directly,
    and a redirect elsewhere is exactly what a hostile embed would try."""
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
                raise _refused(resp)
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
        log.info("download of %s failed: %s", _shown(url), exc)
        # A dropped connection may well work at once; a bad address or certificate will not.
        dropped = isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)
        again_in = 0.0 if dropped and not isinstance(exc, aiohttp.ClientSSLError) else None
        raise DownloadError(wording.FETCH_FAILED, transient=True, again_in=again_in) from None


def _refused(resp: aiohttp.ClientResponse) -> DownloadError:
    text = wording.fetch_refused(resp.status)
    if resp.status == 429:  # Retry-After in seconds (RFC 9110, 10.2.3); a date: a long wait
        wait = resp.headers.get("Retry-After", "0").strip()
        seconds = _DELAY_SECONDS.fullmatch(wait)  # not str.isdigit, which takes "²"
        again_in = float(wait) if seconds else float("inf")
        return DownloadError(text, transient=True, again_in=again_in)
    if resp.status >= 500:
        return DownloadError(text, transient=True, again_in=0.0)
    return DownloadError(text)
