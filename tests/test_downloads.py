"""Fetch safety: `bot.images.download` and `bot.chat.sources` against a local HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import discord
import pytest
from aiohttp import web

from bot.chat.sources import DISCORD_MEDIA_HOSTS, embed_key, image_sources
from bot.images import download as downloads
from bot.images.decode import ImageError
from bot.images.download import DownloadError, download
from tests.local_http import serving

LIMIT = 100_000
BLOB = b"\x89PNG" + bytes(1000)


class Origin:
    """A small HTTP server on 127.0.0.1 that misbehaves on request; counts every request."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.sent_bytes = 0
        self.port = 0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @web.middleware
    async def count(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.hits.append(request.path)
        return await handler(request)

    async def image(self, request: web.Request) -> web.Response:
        return web.Response(body=BLOB, content_type="image/png")

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/image.png")

    async def gone(self, request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def declared_large(self, request: web.Request) -> web.StreamResponse:
        """Says 1 MB is coming, then sends nothing: a reader that waits would hang."""
        response = web.StreamResponse(headers={"Content-Length": str(LIMIT * 10)})
        await response.prepare(request)
        await asyncio.sleep(30)
        return response

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await self._flood(response)
        return response

    async def busy(self, request: web.Request) -> web.Response:
        """Refuses for now as many times as `?fail=` says (counting its own hits), with the
        status of `?status=` and the Retry-After of `?after=`; then serves the image."""
        failures = int(request.query["fail"])
        if self.hits.count(request.path) > failures:
            return await self.image(request)
        headers = {"Retry-After": request.query["after"]} if "after" in request.query else {}
        return web.Response(status=int(request.query["status"]), headers=headers)

    async def stall(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(BLOB))})
        await response.prepare(request)
        await response.write(BLOB[:10])
        await asyncio.sleep(30)  # never finishes
        return response

    async def _flood(self, response: web.StreamResponse) -> None:
        """Up to 50 MB, far past any cap: a reader that waits for the end never gets there."""
        chunk = bytes(64 * 1024)
        with contextlib.suppress(ConnectionError):
            while self.sent_bytes < 50 * 1024 * 1024:
                await response.write(chunk)
                self.sent_bytes += len(chunk)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = Origin()
    app = web.Application(middlewares=[server.count])
    app.router.add_get("/image.png", server.image)
    app.router.add_get("/redirect.png", server.redirect)
    app.router.add_get("/gone.png", server.gone)
    app.router.add_get("/declared-large.png", server.declared_large)
    app.router.add_get("/chunked.png", server.chunked)
    app.router.add_get("/stall.png", server.stall)
    app.router.add_get("/busy.png", server.busy)
    async with serving(app) as server.port:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_a_plain_download(origin: Origin, session: aiohttp.ClientSession) -> None:
    assert await download(session, origin.url("/image.png"), LIMIT) == BLOB


async def test_redirects_are_never_followed(origin: Origin, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadError, match="HTTP 302"):
        await download(session, origin.url("/redirect.png"), LIMIT)
    assert origin.hits == ["/redirect.png"]  # the target was never requested


async def test_a_missing_file_is_gone(origin: Origin, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadError, match="gone"):
        await download(session, origin.url("/gone.png"), LIMIT)


async def test_a_large_declared_size_is_refused_before_the_body(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ImageError) as refused:
        await asyncio.wait_for(download(session, origin.url("/declared-large.png"), LIMIT), 5)
    assert refused.value.code == "too_large"


async def test_the_byte_cap_holds_while_streaming_chunks(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ImageError) as refused:
        await asyncio.wait_for(download(session, origin.url("/chunked.png"), LIMIT), 10)
    assert refused.value.code == "too_large"
    assert origin.sent_bytes < 10 * 1024 * 1024  # cut off long before the 50 MB the server had


@contextlib.asynccontextmanager
async def raw_server(head: bytes) -> AsyncIterator[tuple[str, list[int]]]:
    """Answers any request with `head`, then up to 13 MB of body whatever `head` declared."""
    sent = [0]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                writer.write(bytes(64 * 1024))
                sent[0] += 64 * 1024
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x.png", sent
    finally:
        server.close()


async def test_a_body_read_until_close_is_cut_off(session: aiohttp.ClientSession) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
    async with raw_server(head) as (url, sent):
        with pytest.raises(ImageError) as refused:
            await asyncio.wait_for(download(session, url, LIMIT), 10)
    assert refused.value.code == "too_large"
    assert sent[0] < 10 * 1024 * 1024


async def test_a_small_declared_size_that_lies_gets_no_more_than_it_declared(
    session: aiohttp.ClientSession,
) -> None:
    """HTTP ends the body at the declared length; the excess is a protocol error, never data."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"
    async with raw_server(head) as (url, _):
        try:
            data = await asyncio.wait_for(download(session, url, LIMIT), 10)
        except (DownloadError, ImageError):
            return  # refused outright: fine
    assert len(data) <= 100


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between tries, recorded rather than slept."""
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(downloads, "asyncio", types.SimpleNamespace(sleep=sleep))
    return slept


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_a_refusal_for_now_is_tried_again(
    origin: Origin, session: aiohttp.ClientSession, pauses: list[float], status: int
) -> None:
    """A caption or a description has no later try of its own: one brief CDN hiccup must not
    cost it its image."""
    url = origin.url(f"/busy.png?fail=2&status={status}")
    assert await download(session, url, LIMIT) == BLOB
    assert len(origin.hits) == 3 and pauses == list(downloads.RETRY_PAUSES_S)
    origin.hits.clear()
    with pytest.raises(DownloadError, match=f"HTTP {status}") as refused:
        await download(session, origin.url(f"/busy.png?fail=3&status={status}"), LIMIT)
    assert refused.value.transient and len(origin.hits) == 3  # then it is the indexer's


async def test_a_429_is_tried_again_only_as_soon_as_it_asks(
    origin: Origin, session: aiohttp.ClientSession, pauses: list[float]
) -> None:
    assert await download(session, origin.url("/busy.png?fail=1&status=429&after=3"), LIMIT)
    assert pauses == [3.0]
    # A date, and digits that are not ASCII ones (str.isdigit takes "²"): a long wait.
    for after in ("60", "Wed, 21 Oct 2026 07:28:00 GMT", "²", "1e1"):
        origin.hits.clear()
        with pytest.raises(DownloadError, match="HTTP 429"):
            await download(session, origin.url(f"/busy.png?fail=1&status=429&after={after}"), LIMIT)
        assert len(origin.hits) == 1
    assert pauses == [3.0]


async def test_a_refusal_for_good_or_a_timeout_is_not_tried_again(
    origin: Origin,
    session: aiohttp.ClientSession,
    pauses: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for status in (403, 404, 410, 400):
        origin.hits.clear()
        with pytest.raises(DownloadError):
            await download(session, origin.url(f"/busy.png?fail=1&status={status}"), LIMIT)
        assert len(origin.hits) == 1
    monkeypatch.setattr(downloads, "DOWNLOAD_TIMEOUT", aiohttp.ClientTimeout(total=0.3))
    with pytest.raises(DownloadError, match="timed out"):
        await download(session, origin.url("/stall.png"), LIMIT)
    assert origin.hits.count("/stall.png") == 1 and pauses == []


async def test_a_stalled_download_times_out(
    origin: Origin, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "DOWNLOAD_TIMEOUT", aiohttp.ClientTimeout(total=0.3))
    with pytest.raises(DownloadError, match="timed out"):
        await asyncio.wait_for(download(session, origin.url("/stall.png"), LIMIT), 5)


async def test_hosts_and_schemes_outside_the_list_are_never_requested(
    origin: Origin, session: aiohttp.ClientSession
) -> None:
    hosts = DISCORD_MEDIA_HOSTS | {"127.0.0.1"}  # (the test's origin stands in for a CDN)
    assert await download(session, origin.url("/image.png"), LIMIT, allowed_hosts=hosts) == BLOB
    with pytest.raises(DownloadError, match="not hosted by Discord"):
        await download(session, origin.url("/image.png", "localhost"), LIMIT, allowed_hosts=hosts)
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x.png", "data:image/png;base64,AAAA"):
        with pytest.raises(DownloadError, match="not a web address"):
            await download(session, url, LIMIT)
    assert origin.hits == ["/image.png"]


def _message(attachments: list[dict], embeds: list[dict], content: str = "") -> discord.Message:
    """The parts of a message `image_sources` reads, built from Discord payloads."""
    state = types.SimpleNamespace(http=None)  # an attachment keeps it for reading; never used
    return types.SimpleNamespace(  # type: ignore[return-value]
        id=1000,
        channel=types.SimpleNamespace(id=10),
        guild=types.SimpleNamespace(id=1),
        author=types.SimpleNamespace(id=7),
        created_at=datetime(2024, 6, 1, tzinfo=UTC),
        attachments=[discord.Attachment(data=a, state=state) for a in attachments],  # type: ignore[arg-type]
        embeds=[discord.Embed.from_dict(e) for e in embeds],
        content=content,
        message_snapshots=[],
    )


def _attachment(att_id: int, url: str, filename: str = "a.png") -> dict:
    return {
        "id": str(att_id),
        "filename": filename,
        "size": 10,
        "url": url,
        "proxy_url": url,
        "content_type": "image/png",
    }


def test_only_discord_urls_are_taken_from_a_message() -> None:
    hosts = DISCORD_MEDIA_HOSTS
    proxied = "https://images-ext-1.discordapp.net/external/abc/https/example.com/p.png"
    message = _message(
        [_attachment(5, "https://cdn.discordapp.com/attachments/10/5/a.png?ex=1")],
        [
            {  # a link preview: the original site's URL, and Discord's proxy of it
                "type": "image",
                "url": "https://example.com/p.png",
                "thumbnail": {"url": "https://example.com/p.png", "proxy_url": proxied},
            },
            {  # a proxy_url on any other host is not Discord's proxy
                "type": "image",
                "url": "https://evil.example/q.png",
                "thumbnail": {
                    "url": "https://evil.example/q.png",
                    "proxy_url": "https://evil.example/q.png",
                },
            },
            {  # a rich embed with an image, proxied
                "type": "rich",
                "image": {"url": "http://10.0.0.1/r.png", "proxy_url": "http://10.0.0.1/r.png"},
            },
            {"type": "link", "url": "https://example.com/page"},  # no image at all
        ],
    )
    sources = image_sources(message, hosts)
    assert [(s.url, s.from_embed) for s in sources] == [
        ("https://cdn.discordapp.com/attachments/10/5/a.png?ex=1", False),
        (proxied, True),
    ]
    # An embed has no id: its key is made from its image's address (bot.chat.sources.embed_key).
    assert [s.ref.attachment_id for s in sources] == [5, embed_key("https://example.com/p.png")]


def test_a_media_posts_thumbnail_is_not_one_of_its_images() -> None:
    """Flagged IS_THUMBNAIL (message.mdx, "Attachment Flags"): shown in a media channel's grid,
    not on the message, so neither indexed nor described as one of its pictures."""
    cdn = "https://cdn.discordapp.com/attachments/10"
    shown, thumbnail = _attachment(5, f"{cdn}/5/a.png"), _attachment(6, f"{cdn}/6/t.png")
    thumbnail["flags"] = 1 << 1
    for attachments in ([shown, thumbnail], [thumbnail, shown]):
        message = _message(attachments, [])
        assert [s.ref.attachment_id for s in image_sources(message, DISCORD_MEDIA_HOSTS)] == [5]
        every = image_sources(message, DISCORD_MEDIA_HOSTS, every_attachment=True)
        assert [s.ref.attachment_id for s in every] == [5]


def test_a_preview_is_covered_when_its_link_is_nowhere_outside_spoilers() -> None:
    """A link typed under a spoiler cover previews covered, also should the preview's address
    differ from what was typed (a spoiler is never shown uncovered); one typed in the open,
    or in a message without covers, previews uncovered."""
    proxied = "https://images-ext-1.discordapp.net/external/abc/https/example.com/p.png"

    def preview(url: str) -> dict:
        return {"type": "image", "url": url, "thumbnail": {"url": url, "proxy_url": proxied}}

    typed, given = "https://example.com/p.png", "https://example.com/p.png?x=1"
    for content, url, covered in (
        (f"||{typed}||", typed, True),
        (f"||{typed}||", given, True),
        (f"look ||{typed}|| and ||other||", given, True),
        (f"{typed} ||a word||", typed, False),
        (typed, given, False),
        ("", given, False),
    ):
        message = _message([], [preview(url)], content)
        (source,) = image_sources(message, DISCORD_MEDIA_HOSTS)
        assert source.spoiler is covered, (content, url)


def test_a_preview_whose_address_yarl_cannot_read_keeps_its_message_readable() -> None:
    """A page's og:image or a webhook's embed may name any address; the message's images are
    still listed (the preview's under its address as given), not an error for every reader,
    the catch-up through its channel's history among them."""
    proxied = "https://images-ext-1.discordapp.net/external/abc/https/example.com/p.png"
    for address in ("https://example.com:99999/p.png?v=1", "https://xn--a.com/p.png?v=2"):
        preview = {"type": "image", "url": address,
                   "thumbnail": {"url": address, "proxy_url": proxied}}  # fmt: skip
        attachment = _attachment(5, "https://cdn.discordapp.com/attachments/10/5/a.png")
        message = _message([attachment], [preview])
        sources = image_sources(message, DISCORD_MEDIA_HOSTS)
        assert [s.ref.attachment_id for s in sources] == [5, embed_key(address)]
        assert embed_key(address) != embed_key(address.replace("v=", "w="))
