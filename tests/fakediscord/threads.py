"""Threads' life: archiving and unarchiving, and the routes that list archived threads.

As threads.mdx describes ("Active & Archived Threads", "Unarchiving a Thread"):
- a thread archives after ``auto_archive_duration`` minutes without activity (on
  ``FakeDiscord.advance``), or when ``archive_thread`` says so: THREAD_UPDATE;
- a message posted in an archived thread unarchives it first: THREAD_UPDATE, then
  THREAD_MEMBER_UPDATE to the bot if it is a member; a locked thread (``lock_thread``, or
  archived locked) takes posts only from members with Manage Threads;
- archived threads are not in GUILD_CREATE (only active ones are synced) and are listed by
  ``GET /channels/{id}/threads/archived/public``, ``.../archived/private`` and
  ``/channels/{id}/users/@me/threads/archived/private`` (channel.mdx, "List ... Archived
  Threads": permissions, order and ``before`` as documented there);
- editing a message in an archived thread is refused with 50083; without Manage Threads, the
  bot's edits in a locked thread, and its deletions in a locked archived one, with 160005.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from . import payloads as p
from .rest import API_PREFIX


class ThreadsMixin:
    """Threads half of :class:`~tests.fakediscord.FakeDiscord` (uses World's state)."""

    def _init_threads(self) -> None:
        self._thread_activity: dict[int, float] = {}  # thread -> last activity (clock seconds)

    def _add_thread_routes(self, app: web.Application) -> None:
        r, a = app.router, API_PREFIX
        r.add_get(a + "/channels/{cid}/threads/archived/public", self._archived_public)
        r.add_get(a + "/channels/{cid}/threads/archived/private", self._archived_private)
        r.add_get(a + "/channels/{cid}/users/@me/threads/archived/private", self._archived_joined)
        r.add_get(a + "/guilds/{gid}/threads/active", self._active_threads)

    # --- archiving ------------------------------------------------------------------------------

    def is_archived(self, channel_id: int) -> bool:
        return bool((self.channels[channel_id].get("thread_metadata") or {}).get("archived"))

    async def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """Archive a thread now, as its inactivity timer or a moderator would (THREAD_UPDATE)."""
        self._set_archived(thread_id, True, locked=locked)
        await self.flush()

    async def lock_thread(self, thread_id: int, locked: bool = True) -> None:
        """A moderator locks (or unlocks) an active thread (THREAD_UPDATE); only members with
        Manage Threads may post there then (threads.mdx, "Locked Threads")."""
        thread = self.channels[thread_id]
        thread["thread_metadata"]["locked"] = locked
        guild_id = int(thread["guild_id"])
        self._dispatch(
            "THREAD_UPDATE", self.thread_view(thread_id), guild_id=guild_id, channel_id=thread_id
        )
        await self.flush()

    def _set_archived(self, thread_id: int, archived: bool, *, locked: bool = False) -> None:
        thread = self.channels[thread_id]
        meta = thread["thread_metadata"]
        meta.update(
            archived=archived,
            locked=locked if archived else meta["locked"],
            archive_timestamp=self.clock.iso(),
        )
        guild_id = int(thread["guild_id"])
        self._dispatch(
            "THREAD_UPDATE", self.thread_view(thread_id), guild_id=guild_id, channel_id=thread_id
        )
        joined = self.thread_members.get(thread_id, {}).get(self.bot_id)
        if not archived and joined is not None:
            member = {
                "id": str(thread_id),
                "user_id": str(self.bot_id),
                "join_timestamp": joined,
                "flags": 0,
                "guild_id": str(guild_id),
            }
            self._dispatch("THREAD_MEMBER_UPDATE", member, guild_id=guild_id, channel_id=thread_id)
        self._thread_activity[thread_id] = self.clock.now()

    def _before_post(self, channel_id: int, author_id: int) -> None:
        """A message is about to be posted: a locked thread refuses it without Manage Threads
        (threads.mdx, "Locked Threads"); an archived one unarchives."""
        if self.channels[channel_id]["type"] not in p.THREAD_TYPES:
            return
        self._refuse_if_locked(channel_id, author_id)
        if self.is_archived(channel_id):
            self._set_archived(channel_id, False)
        self._thread_activity[channel_id] = self.clock.now()

    def _refuse_if_archived(self, channel_id: int) -> None:
        if self.channels[channel_id]["type"] in p.THREAD_TYPES and self.is_archived(channel_id):
            raise p.ApiError(400, 50083, "Thread is archived")

    def _refuse_if_locked(
        self, channel_id: int, user_id: int, *, archived_only: bool = False
    ) -> None:
        """Without Manage Threads, no one posts or edits in a locked thread, nor deletes in
        one that is archived too (threads.mdx, "Locked Threads")."""
        if self.channels[channel_id]["type"] not in p.THREAD_TYPES:
            return
        locked = self.channels[channel_id]["thread_metadata"]["locked"]
        if not locked or (archived_only and not self.is_archived(channel_id)):
            return
        if not self.permissions_for(channel_id, user_id) & p.MANAGE_THREADS:
            raise p.ApiError(403, 160005, "Thread is locked")

    def _archive_idle_threads(self) -> None:
        now = self.clock.now()
        for thread_id, thread in list(self.channels.items()):
            if thread["type"] not in p.THREAD_TYPES or self.is_archived(thread_id):
                continue
            created = int(thread_id) >> 22
            since = self._thread_activity.get(thread_id, (created + p.DISCORD_EPOCH_MS) / 1000)
            minutes = thread["thread_metadata"]["auto_archive_duration"]
            if now - since >= minutes * 60:
                self._set_archived(thread_id, True)

    # --- listing --------------------------------------------------------------------------------

    def _archived(self, parent_id: int, kind: int) -> list[int]:
        return [
            c
            for c, ch in self.channels.items()
            if ch["type"] == kind and ch.get("parent_id") == str(parent_id) and self.is_archived(c)
        ]

    def _threads_body(self, thread_ids: list[int], limit: int) -> dict[str, Any]:
        shown = thread_ids[:limit]
        members = [
            {"id": str(t), "user_id": str(self.bot_id), "join_timestamp": joined, "flags": 0}
            for t in shown
            if (joined := self.thread_members.get(t, {}).get(self.bot_id)) is not None
        ]
        return {
            "threads": [self.channels[t] for t in shown],
            "members": members,
            "has_more": len(thread_ids) > limit,
        }

    def _by_archive_time(self, thread_ids: list[int], request: web.Request) -> list[int]:
        def stamp(t: int) -> dt.datetime:
            return dt.datetime.fromisoformat(
                self.channels[t]["thread_metadata"]["archive_timestamp"]
            )

        before = request.query.get("before")
        if before:
            cutoff = dt.datetime.fromisoformat(before.replace("Z", "+00:00"))
            thread_ids = [t for t in thread_ids if stamp(t) < cutoff]
        return sorted(thread_ids, key=stamp, reverse=True)

    @staticmethod
    def _limit(request: web.Request) -> int:
        limit = int(request.query.get("limit", 50))
        if not 2 <= limit <= 100:
            raise p.form_error("limit", "NUMBER_TYPE_MAX", "int value should be <= 100 and >= 2.")
        return limit

    async def _archived_public(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, p.READ_MESSAGE_HISTORY)
        threads = self._by_archive_time(self._archived(cid, p.PUBLIC_THREAD), request)
        return p.json_response(self._threads_body(threads, self._limit(request)))

    async def _archived_private(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, p.READ_MESSAGE_HISTORY | p.MANAGE_THREADS)
        threads = self._by_archive_time(self._archived(cid, p.PRIVATE_THREAD), request)
        return p.json_response(self._threads_body(threads, self._limit(request)))

    async def _archived_joined(self, request: web.Request) -> web.Response:
        cid = self._channel(request)
        self._require(cid, p.READ_MESSAGE_HISTORY)
        before = int(request.query.get("before", 0)) or None
        threads = [
            t
            for t in self._archived(cid, p.PRIVATE_THREAD)
            if self.bot_id in self.thread_members.get(t, {}) and (before is None or t < before)
        ]
        return p.json_response(
            self._threads_body(sorted(threads, reverse=True), self._limit(request))
        )

    async def _active_threads(self, request: web.Request) -> web.Response:
        gid = self._bot_guild(request)
        threads = [
            c
            for c in self.guilds[gid].channel_ids
            if self.channels[c]["type"] in p.THREAD_TYPES
            and not self.is_archived(c)
            and self.can_see(c, self.bot_id)
        ]
        return p.json_response(self._threads_body(threads, len(threads)))
