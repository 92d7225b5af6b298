"""One simulated interaction (slash command or message context menu) and what the bot answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from . import payloads as p

#: Interaction tokens are valid for 15 minutes (receiving-and-responding.mdx, "Followup Messages").
TOKEN_LIFETIME_S = 15 * 60


class Interaction:
    """One simulated application-command interaction and what the bot answered.

    ``payload``: the INTERACTION_CREATE data sent. ``callbacks``: bodies POSTed to
    ``/interactions/{id}/{token}/callback`` (``{"type": 4|5|9|..., "data": ...}``);
    ``response_type``: the callback type (4 message, 5 deferred, 9 modal, 8 autocomplete).
    ``original``: the @original message (live dict; flags 128 while only deferred).
    ``followups``: followup message payloads. ``entries``: this interaction's entries of
    :attr:`FakeDiscord.sent` in order (kinds ``interaction_response``, ``followup``,
    ``edit_original``, ``edit``). ``modal``: the modal's data if type 9 was answered.
    """

    def __init__(self, payload: dict, channel_id: int, user_id: int, created: float) -> None:
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.channel_id, self.user_id = channel_id, user_id
        self.name: str = payload["data"]["name"]
        self.command_type: int = payload["data"]["type"]
        self.created = created  # on the server's clock
        self.callbacks: list[dict] = []
        self.response_type: int | None = None
        self.original: dict | None = None
        self.followups: list[dict] = []
        self.entries: list[dict] = []
        self.modal: dict | None = None
        self._changed = asyncio.Event()

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    def expired(self, now: float) -> bool:
        return now - self.created > TOKEN_LIFETIME_S

    @property
    def deferred(self) -> bool:
        return self.response_type == 5

    def _notify(self) -> None:
        self._changed.set()

    async def _wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._changed.clear()
                    result = check()
                    if result is not None:
                        return result
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"interaction {self.name!r}: no {what} within {timeout}s; "
                f"callbacks={self.callbacks!r}"
            ) from None

    async def wait_for_callback(self, timeout: float = 10.0) -> dict:
        """The first callback body (e.g. ``{"type": 5, "data": {...}}``)."""
        return await self._wait(
            lambda: self.callbacks[0] if self.callbacks else None, timeout, "callback"
        )

    async def wait_for_response(
        self,
        timeout: float = 10.0,
        *,
        predicate: Callable[[dict], bool] | None = None,
    ) -> dict:
        """The latest visible message of this interaction, once there is one.

        Visible: the type-4 response, the @original once edited after a defer, a followup (the
        first followup after a defer fills the deferred message), or an edit of those. Returns
        the most recent such :attr:`FakeDiscord.sent` entry matching ``predicate`` (if given);
        waits until one exists.
        """

        def check() -> dict | None:
            for entry in reversed(self.entries):
                if not entry["flags"] & p.LOADING and (predicate is None or predicate(entry)):
                    return entry
            return None

        return await self._wait(check, timeout, "visible response")
