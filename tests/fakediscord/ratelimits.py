"""Discord's rate limits, applied by default (rate-limits.mdx).

- creating messages: 5 per 5 s per channel; editing and deleting them: 5 per 5 s per channel
  each (per-route limits keyed by the top-level resource, "Per-route rate limits");
- every request counts against the global limit of 50 per second ("Global Rate Limit"), except
  the interaction endpoints, which are not bound to it (receiving-and-responding.mdx,
  "Endpoints"); they are limited per interaction token instead (5 per 2 s, as webhooks);
- other routes carry the global window in their headers, so a client that reads them (as
  discord.py does) slows down before it is refused.

Every response carries ``X-RateLimit-*`` headers ("Header Format"); a refused request gets 429
with ``Retry-After``, ``X-RateLimit-Scope`` (``X-RateLimit-Global`` when global) and the JSON body
of the spec's ``RatelimitedResponse``. Invalid requests (401, 403, and 429 except those of scope
``shared``) are counted, as Discord counts them towards its ban of 10,000 per 10 minutes
("Invalid Request Limit").

Windows are fixed, from the first request after a reset, on the real monotonic clock: discord.py
really sleeps for them.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass

from aiohttp import web

from .payloads import json_response

MESSAGE_LIMIT, MESSAGE_PERIOD_S = 5, 5.0
GLOBAL_LIMIT, GLOBAL_PERIOD_S = 50, 1.0
INTERACTION_LIMIT, INTERACTION_PERIOD_S = 5, 2.0

_MESSAGES = re.compile(r"^/channels/(\d+)/messages(/\d+)?$")
_INTERACTION = re.compile(r"^/(?:interactions/\d+/([^/]+)/callback|webhooks/\d+/([^/]+))")


@dataclass
class Window:
    limit: int
    period: float
    count: int = 0
    resets_at: float = 0.0

    def roll(self, now: float) -> None:
        if now >= self.resets_at:
            self.count, self.resets_at = 0, now + self.period

    def headers(self, bucket: str, now: float) -> dict[str, str]:
        after = max(self.resets_at - now, 0.0)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.limit - self.count, 0)),
            "X-RateLimit-Reset": f"{time.time() + after:.3f}",
            "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }


def _bucket_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:16]


class RateLimits:
    """The limiter of one test server: ``enabled`` (default True), ``invalid_requests``
    [(method, path, status)], ``refused`` [(method, path, scope)] (429s it gave). ``message``
    and ``interaction`` are the (limit, period) of those buckets; a test may shorten a period
    before the first request."""

    def __init__(self) -> None:
        self.enabled = True
        self.invalid_requests: list[tuple[str, str, int]] = []
        self.refused: list[tuple[str, str, str]] = []
        self.message = (MESSAGE_LIMIT, MESSAGE_PERIOD_S)
        self.interaction = (INTERACTION_LIMIT, INTERACTION_PERIOD_S)
        self._global = Window(GLOBAL_LIMIT, GLOBAL_PERIOD_S)
        self._windows: dict[tuple[str, str], Window] = {}

    def _route(self, method: str, rel: str) -> tuple[str, Window | None, bool]:
        """(bucket name, its window, or None for the global one; counts against the global
        limit)."""
        interaction = _INTERACTION.match(rel)
        if interaction:
            token = interaction.group(1) or interaction.group(2)
            return "interaction", self._window("interaction", token, self.interaction), False
        messages = _MESSAGES.match(rel)
        if messages:
            kind = {"POST": "create", "PATCH": "edit", "DELETE": "delete"}.get(method)
            single = messages.group(2) is not None
            if kind and (kind == "create") != single:
                name = f"messages.{kind}"
                return name, self._window(name, messages.group(1), self.message), True
        return "global", None, True

    def _window(self, name: str, major: str, shape: tuple[int, float]) -> Window:
        key = (name, major)
        if key not in self._windows:
            self._windows[key] = Window(*shape)
        return self._windows[key]

    def take(self, method: str, rel: str) -> tuple[dict[str, str], web.Response | None]:
        """Count a request: (headers for its response, or the 429 that refuses it)."""
        now = time.monotonic()
        name, window, counts_global = self._route(method, rel)
        self._global.roll(now)
        shown = window or self._global
        if window is not None:
            window.roll(now)
        if not self.enabled:
            return {}, None
        bucket = _bucket_hash(name)
        if window is not None and window.count >= window.limit:
            return {}, self._refuse(method, rel, window, bucket, now, scope="user")
        if counts_global and self._global.count >= self._global.limit:
            return {}, self._refuse(method, rel, self._global, bucket, now, scope="global")
        if window is not None:
            window.count += 1
        if counts_global:
            self._global.count += 1
        return shown.headers(bucket, now), None

    def peek(self, method: str, rel: str) -> dict[str, str]:
        """The headers a request would carry now, without counting it."""
        now = time.monotonic()
        name, window, _ = self._route(method, rel)
        shown = window or self._global
        shown.roll(now)
        return shown.headers(_bucket_hash(name), now) if self.enabled else {}

    def _refuse(
        self, method: str, rel: str, window: Window, bucket: str, now: float, *, scope: str
    ) -> web.Response:
        retry_after = max(round(window.resets_at - now, 3), 0.001)
        is_global = scope == "global"
        headers = window.headers(bucket, now)
        headers.update(
            {
                "Retry-After": str(max(1, math.ceil(retry_after))),
                "X-RateLimit-Scope": scope,
                "Via": "1.1 google",
            }
        )
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        self.refused.append((method, rel, scope))
        return too_many_requests(retry_after, is_global, headers)

    def record(self, method: str, rel: str, status: int, headers: dict[str, str]) -> None:
        """Count an invalid request (429s of scope ``shared`` are not held against the bot)."""
        if status in (401, 403) or (status == 429 and headers.get("X-RateLimit-Scope") != "shared"):
            self.invalid_requests.append((method, rel, status))


def too_many_requests(retry_after: float, is_global: bool, headers: dict[str, str]) -> web.Response:
    """A 429 with the spec's ``RatelimitedResponse`` body (``code`` is required there)."""
    body = {
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": is_global,
        "code": 0,
    }
    return json_response(body, 429, headers)
