"""Discord's media: signed attachment URLs, the media proxy, external image proxies, and the
``proxy_url``/``width``/``height`` Discord fills in on every embed image.

URLs are exactly the shapes Discord sends (reference.mdx, "Signed Attachment CDN URLs";
message.mdx, "Embed Image Structure"):

- attachments: ``https://cdn.discordapp.com/attachments/{channel}/{attachment}/{name}?ex=..&is=..&hm=..&``
  whose ``ex`` (hex expiry) and ``hm`` (signature) are checked when fetched: an expired or
  tampered URL answers 404 as Discord's CDN does. Payloads the test server sends always carry a
  valid URL: an expired one is signed again (Discord "automatically refreshes attachment CDN URLs
  that appear within the client");
- ``proxy_url`` of an attachment: the same path and query on ``media.discordapp.net``;
- images of other sites (link previews, embed images with outside URLs):
  ``https://images-ext-{1,2}.discordapp.net/external/{signature}/{scheme}/{host}/{path}``, the
  host chosen by the URL (both occur in real payloads).

They are served over HTTPS on a port of their own; :mod:`tests.fakediscord.hostroutes` makes the
real names reach it. What sites other than Discord would serve (for previews) is registered with
``host_on_web(url, data, content_type)``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from aiohttp import web
from yarl import URL

from .hostroutes import CDN_HOST, EXTERNAL_PROXY_HOSTS, MEDIA_HOSTS, MEDIA_PROXY_HOST

#: Attachment URLs seen in real payloads expire about a day after they are issued.
URL_LIFETIME_S = 24 * 3600
GONE = "This content is no longer available."
IS_SPOILER = 1 << 3


@dataclass
class Blob:
    data: bytes
    content_type: str | None
    channel_id: int
    filename: str


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if Pillow can read the header, else None."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


def url_name(filename: str) -> str:
    """The file name as it appears in an attachment URL (URL-safe; the payload keeps the name)."""
    return quote(filename, safe="")


class MediaMixin:
    """Media half of :class:`~tests.fakediscord.FakeDiscord` (uses ``clock`` and ``ids``)."""

    def _init_media(self) -> None:
        self.blobs: dict[int, Blob] = {}
        self.web: dict[str, tuple[bytes, str | None]] = {}
        self.pages: dict[str, str] = {}  # a web page -> the picture it names for its previews
        self.media_requests: list[tuple[str, str, int]] = []  # (host, path, status)
        self.media_port = 0
        self._secret = secrets.token_bytes(16)
        self._external: dict[str, str] = {}  # external proxy path -> original URL
        self._revoked_before = 0
        self._stalls: list[re.Pattern[str]] = []

    # --- URLs -------------------------------------------------------------------------------

    def _sign(self, path: str, expires: int, issued: int) -> str:
        message = f"{path}|{expires:x}|{issued:x}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _signed(self, host: str, path: str) -> str:
        issued = max(int(self.clock.now()), self._revoked_before)
        expires = issued + URL_LIFETIME_S
        sig = self._sign(path, expires, issued)
        return f"https://{host}{path}?ex={expires:08x}&is={issued:08x}&hm={sig}&"

    def attachment_url(self, channel_id: int, attachment_id: int, filename: str) -> str:
        path = f"/attachments/{channel_id}/{attachment_id}/{url_name(filename)}"
        return self._signed(CDN_HOST, path)

    def media_proxy_url(self, url: str) -> str:
        parsed = URL(url)
        return str(parsed.with_host(MEDIA_PROXY_HOST))

    def external_proxy_host(self, url: str) -> str:
        """Which of Discord's external image proxies serves ``url`` (decided by the URL)."""
        return EXTERNAL_PROXY_HOSTS[hashlib.sha256(url.encode()).digest()[0] % 2]

    def external_proxy_url(self, url: str) -> str:
        digest = hmac.new(self._secret, url.encode(), hashlib.sha256).digest()
        sig = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        target = URL(url)
        rest = f"{target.host}{target.raw_path}"
        if target.raw_query_string:
            rest += "%3F" + quote(target.raw_query_string, safe="")
        path = f"/external/{sig}/{target.scheme}/{rest}"
        self._external[unquote(path)] = url  # (looked up by the decoded path a client sends)
        return f"https://{self.external_proxy_host(url)}{path}"

    def _valid(self, url: URL) -> bool:
        query = parse_qs(url.raw_query_string)
        try:
            expires, issued = int(query["ex"][0], 16), int(query["is"][0], 16)
            sig = query["hm"][0]
        except (KeyError, ValueError, IndexError):
            return False
        good = hmac.compare_digest(sig, self._sign(url.raw_path, expires, issued))
        return good and issued >= self._revoked_before and self.clock.now() < expires

    def expire_media_urls(self) -> None:
        """Every attachment URL issued so far stops working (as if a day had passed for them)."""
        self._revoked_before = int(self.clock.now()) + 1

    def _is_attachment_url(self, url: Any) -> bool:
        if not isinstance(url, str):
            return False
        parsed = URL(url)
        return parsed.host in (CDN_HOST, MEDIA_PROXY_HOST) and parsed.path.startswith(
            "/attachments/"
        )

    def refresh_urls(self, msg: dict) -> dict:
        """Sign again, in place, every attachment URL of the message that no longer works."""
        holders = [msg, *(s["message"] for s in msg.get("message_snapshots") or [])]
        for holder in holders:
            for att in holder.get("attachments") or []:
                if not self._valid(URL(att["url"])):
                    att["url"] = self._signed(CDN_HOST, URL(att["url"]).raw_path)
                    att["proxy_url"] = self.media_proxy_url(att["url"])
            for embed in holder.get("embeds") or []:
                for key in ("image", "thumbnail"):
                    media = embed.get(key) or {}
                    url = media.get("url")
                    if self._is_attachment_url(url) and not self._valid(URL(url)):
                        media["url"] = self._signed(CDN_HOST, URL(url).raw_path)
                        media["proxy_url"] = self.media_proxy_url(media["url"])
        return msg

    # --- attachments and embeds as Discord fills them ------------------------------------------

    def store_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        description: str | None = None,
        spoiler: bool = False,
        ephemeral: bool = False,
    ) -> dict:
        """Keep the bytes (served at the payload's ``url``); returns the attachment payload
        (message.mdx, "Attachment Structure"; ``flags`` IS_SPOILER is 1 << 3)."""
        att_id = self.ids.next()
        self.blobs[att_id] = Blob(data, content_type, channel_id, filename)
        url = self.attachment_url(channel_id, att_id, filename)
        att: dict[str, Any] = {
            "id": str(att_id), "filename": filename, "size": len(data), "url": url,
            "proxy_url": self.media_proxy_url(url),
            # A file named SPOILER_... is a spoiler too (the clients' way of marking one).
            "flags": IS_SPOILER if spoiler or filename.startswith("SPOILER_") else 0,
        }  # fmt: skip
        if content_type:
            att["content_type"] = content_type
        if description:
            att["description"] = description
        if ephemeral:
            att["ephemeral"] = True
        dims = image_size(data) if (content_type or "").startswith("image/") else None
        if dims:
            att["width"], att["height"] = dims
        return att

    def host_on_web(self, url: str, data: bytes, content_type: str | None = "image/png") -> None:
        """What another site serves at ``url``: Discord's proxy and link previews can fetch it."""
        self.web[url] = (data, content_type)

    def host_page(self, url: str, picture: str) -> None:
        """A web page at ``url`` whose preview picture (its ``og:image``) is at ``picture``:
        a link to it unfurls as an article with that image."""
        self.pages[url] = picture

    def _content_at(self, url: str) -> tuple[bytes, str | None] | None:
        if self._is_attachment_url(url):
            parts = URL(url).path.split("/")
            blob = self.blobs.get(int(parts[3])) if len(parts) > 3 and parts[3].isdigit() else None
            return (blob.data, blob.content_type) if blob else None
        return self.web.get(url)

    def embed_media(self, url: str) -> dict:
        """An embed image or thumbnail for ``url`` as Discord stores it (message.mdx, "Embed Image
        Structure"): the URL as given, Discord's proxy of it, and the image's size."""
        media: dict[str, Any] = {"url": url}
        if not url.startswith(("http://", "https://")):
            return media
        proxied = self._is_attachment_url(url)
        media["proxy_url"] = self.media_proxy_url(url) if proxied else self.external_proxy_url(url)
        content = self._content_at(url)
        dims = image_size(content[0]) if content else None
        media["width"], media["height"] = dims or (0, 0)  # 0 x 0: Discord could not fetch it
        if content and content[1]:
            media["content_type"] = content[1]
        return media

    def fill_embed(self, embed: dict, attachments: list[dict] = ()) -> dict:  # type: ignore[assignment]
        """An embed a bot or webhook sent, as Discord stores it: type ``rich`` and filled-in
        images (message.mdx, "Create Message", Limitations); fields get ``inline``."""
        out = dict(embed, type="rich")
        by_name = {a["filename"]: a for a in attachments}
        for key in ("image", "thumbnail"):
            url = (embed.get(key) or {}).get("url")
            if isinstance(url, str) and url.startswith("attachment://"):
                found = by_name.get(url.removeprefix("attachment://"))
                url = found["url"] if found else url
            if url:
                out[key] = self.embed_media(url)
        if "fields" in embed:
            out["fields"] = [dict({"inline": False}, **f) for f in embed["fields"] or []]
        for key in ("footer", "author"):
            if embed.get(key) and embed[key].get("icon_url"):
                icon = embed[key]["icon_url"]
                proxy = self.embed_media(icon).get("proxy_url")
                out[key] = dict(embed[key], **({"proxy_icon_url": proxy} if proxy else {}))
        return out

    # --- serving --------------------------------------------------------------------------------

    def stall_media(self, path_regex: str) -> None:
        """Media whose path matches ``path_regex`` answer with headers, then nothing (a sick
        CDN node)."""
        self._stalls.append(re.compile(path_regex))

    def _add_media_routes(self, app: web.Application) -> None:
        app.router.add_get("/attachments/{cid}/{aid}/{name}", self._serve_media)
        app.router.add_get("/external/{tail:.*}", self._serve_media)

    @staticmethod
    def is_media_request(request: web.Request) -> bool:
        return request.secure and (request.host or "").split(":")[0] in MEDIA_HOSTS

    async def _serve_media(self, request: web.Request) -> web.StreamResponse:
        host = (request.host or "").split(":")[0]
        if not self.is_media_request(request):
            return await self._unknown_route(request)  # type: ignore[attr-defined,no-any-return]
        if any(s.search(request.path) for s in self._stalls):
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await asyncio.sleep(60)
            return response
        content = self._media_content(host, request)
        self.media_requests.append((host, request.path, 200 if content else 404))
        if content is None:
            return web.Response(status=404, text=GONE)
        data, content_type = content
        return web.Response(
            body=data, headers={"Content-Type": content_type or "application/octet-stream"}
        )

    def _media_content(self, host: str, request: web.Request) -> tuple[bytes, str | None] | None:
        if host in EXTERNAL_PROXY_HOSTS:
            original = self._external.get(request.path)
            if original is None or self.external_proxy_host(original) != host:
                return None
            return self.web.get(original)
        if not self._valid(request.url):
            return None
        # The signature covers the whole path, the file's name included.
        aid = request.match_info["aid"]
        blob = self.blobs.get(int(aid)) if aid.isdigit() else None
        if blob is None or str(blob.channel_id) != request.match_info["cid"]:
            return None
        return blob.data, blob.content_type
