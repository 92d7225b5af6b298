"""Message building, storage and history; bodies the bot sends, validated like Discord."""

from __future__ import annotations

import copy
import mimetypes
from collections.abc import Sequence
from typing import Any

from . import payloads as p

_EMBED_LIMITS = {"title": 256, "description": 4096}


def validate_message_body(body: dict, n_files: int, *, editing: bool = False) -> None:
    """Raise ApiError for bodies real Discord rejects (empty, too long, too many embeds)."""
    content = body.get("content") or ""
    embeds = body.get("embeds") or []
    if len(content) > 2000:
        raise p.form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    if len(embeds) > 10:
        raise p.form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in _EMBED_LIMITS.items():
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                raise p.form_error(
                    f"embeds.{i}.{key}",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limit} or fewer in length.",
                )
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise p.form_error(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Too many fields.")
        for j, field in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                value = str(field.get(key) or "")
                total += len(value)
                if not value or len(value) > limit:
                    raise p.form_error(
                        f"embeds.{i}.fields.{j}.{key}",
                        "BASE_TYPE_BAD_LENGTH",
                        f"Must be between 1 and {limit} in length.",
                    )
        total += len((embed.get("footer") or {}).get("text") or "")
        total += len((embed.get("author") or {}).get("name") or "")
    if total > 6000:
        raise p.form_error(
            "embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    if n_files > 10:
        raise p.form_error("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    empty = not (
        content
        or embeds
        or n_files
        or body.get("sticker_ids")
        or body.get("poll")
        or body.get("components")
        or body.get("attachments")
    )
    if empty and not editing:
        raise p.ApiError(400, 50006, "Cannot send an empty message")


class MessagesMixin:
    """Messages half of :class:`~tests.fakediscord.FakeDiscord` (uses World's state)."""

    def build_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        attachments: Sequence[dict] = (),
        embeds: Sequence[dict] = (),
        reply_to: int | None = None,
        webhook_id: int | None = None,
        msg_type: int | None = None,
        flags: int = 0,
        mention_ids: list[int] | None = None,
        **extra: Any,
    ) -> dict:
        """A message payload as REST returns it (no ``member``); not stored."""
        channel = self.channels[channel_id]
        msg_id = self.ids.next()
        if mention_ids is None:
            mention_ids = [int(u) for u in p.USER_MENTION.findall(content)]
        mentions = [self.users[u] for u in dict.fromkeys(mention_ids) if u in self.users]
        msg: dict[str, Any] = {
            "id": str(msg_id), "channel_id": str(channel_id), "type": 0, "content": content,
            "author": self.users[author_id], "attachments": list(attachments),
            "embeds": list(embeds), "mentions": mentions,
            "mention_roles": p.ROLE_MENTION.findall(content),
            "mention_everyone": "@everyone" in content or "@here" in content,
            "pinned": False, "tts": False, "timestamp": p.snowflake_time_iso(msg_id),
            "edited_timestamp": None, "flags": flags, "components": [],
        }  # fmt: skip
        if "guild_id" in channel:
            msg["guild_id"] = channel["guild_id"]
        if webhook_id is not None:
            msg["webhook_id"] = str(webhook_id)
        if reply_to is not None:
            ref = self.messages[channel_id].get(reply_to)
            msg["message_reference"] = {
                "type": 0,
                "message_id": str(reply_to),
                "channel_id": str(channel_id),
            }
            if "guild_id" in channel:
                msg["message_reference"]["guild_id"] = channel["guild_id"]
            msg["referenced_message"] = None
            if ref is not None:
                msg["referenced_message"] = {
                    k: v for k, v in ref.items() if k != "referenced_message"
                }
        msg["type"] = msg_type if msg_type is not None else (19 if reply_to is not None else 0)
        msg.update(extra)
        return msg

    def store_message(self, msg: dict) -> dict:
        channel_id = int(msg["channel_id"])
        self.messages[channel_id][int(msg["id"])] = msg
        channel = self.channels[channel_id]
        channel["last_message_id"] = msg["id"]
        if channel["type"] in p.THREAD_TYPES:
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        return msg

    def gateway_message(self, msg: dict) -> dict:
        """MESSAGE_CREATE/UPDATE form: adds ``member`` for guild messages by members."""
        out = copy.copy(msg)
        guild = self.guild_of(int(msg["channel_id"]))
        author = int(msg["author"]["id"])
        if guild is not None and "webhook_id" not in msg and author in guild.members:
            out["member"] = self.member_payload(guild.id, author, with_user=False)
        return out

    def content_visible_without_intent(self, msg: dict) -> bool:
        """DMs, the bot's own messages and messages mentioning the bot keep their content."""
        return (
            "guild_id" not in msg
            or int(msg["author"]["id"]) == self.bot_id
            or any(int(u["id"]) == self.bot_id for u in msg.get("mentions", []))
        )

    def history(
        self,
        channel_id: int,
        limit: int = 50,
        *,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
    ) -> list[dict]:
        """Stored messages newest first, selected like GET /channels/{id}/messages."""
        ids = sorted(self.messages[channel_id])
        if around is not None:
            older = [i for i in ids if i < around][-(limit // 2) :] if limit // 2 else []
            newer = [i for i in ids if i >= around][: limit - len(older)]
            chosen = older + newer
        elif after is not None:
            chosen = [i for i in ids if i > after][:limit]
        else:
            chosen = [i for i in ids if before is None or i < before][-limit:]
        return [self.messages[channel_id][i] for i in sorted(chosen, reverse=True)]

    def _new_attachments(
        self, cid: int, body: dict, files: dict[int, tuple[str, bytes]], *, ephemeral: bool = False
    ) -> list[dict]:
        meta = {str(a.get("id")): a for a in body.get("attachments") or []}
        out = []
        for index, (filename, data) in sorted(files.items()):
            if len(data) > p.MAX_FILE_SIZE:
                raise p.ApiError(413, 40005, "Request entity too large")
            info = meta.get(str(index), {})
            name = info.get("filename") or filename
            out.append(
                self.store_attachment(
                    cid,
                    name,
                    data,
                    mimetypes.guess_type(name)[0],
                    description=info.get("description"),
                    ephemeral=ephemeral,
                )
            )
        return out

    def _mention_ids(
        self, content: str, allowed: dict | None, reply_author: int | None
    ) -> list[int]:
        ids = [int(u) for u in p.USER_MENTION.findall(content)]
        if allowed is not None and "users" not in (allowed.get("parse") or []):
            permitted = {int(u) for u in allowed.get("users") or []}
            ids = [u for u in ids if u in permitted]
        ping_reply = True if allowed is None else bool(allowed.get("replied_user", False))
        if reply_author is not None and ping_reply:
            ids.append(reply_author)
        return ids

    def _bot_message(
        self,
        cid: int,
        body: dict,
        files: dict,
        *,
        reply_to: int | None = None,
        check_embeds: bool = True,
        ephemeral: bool = False,
        **extra: Any,
    ) -> dict:
        """A new (unstored) message authored by the bot from a create-message body."""
        embeds = body.get("embeds") or []
        if check_embeds and not self.permissions_for(cid, self.bot_id) & p.EMBED_LINKS:
            embeds = []
        reply_author = None
        if reply_to is not None:
            reply_author = int(self.messages[cid][reply_to]["author"]["id"])
        content = body.get("content") or ""
        mentions = self._mention_ids(content, body.get("allowed_mentions"), reply_author)
        flags = int(body.get("flags") or 0) & ((1 << 2) | (1 << 12) | p.EPHEMERAL)
        msg = self.build_message(
            cid,
            self.bot_id,
            content,
            embeds=embeds,
            attachments=self._new_attachments(cid, body, files, ephemeral=ephemeral),
            reply_to=reply_to,
            mention_ids=mentions,
            flags=flags,
            **extra,
        )
        for key in ("components", "nonce", "tts", "poll"):
            if body.get(key):
                msg[key] = body[key]
        return msg

    def _record_sent(
        self,
        msg: dict,
        kind: str,
        body: dict,
        files: dict,
        *,
        ephemeral: bool = False,
        **extra: Any,
    ) -> dict:
        entry = copy.deepcopy(msg)
        entry.update(
            kind=kind,
            allowed_mentions=body.get("allowed_mentions"),
            files=[f for _, f in sorted(files.items())],
            ephemeral=ephemeral,
            **extra,
        )
        self._append_sent(entry)
        return entry

    def _apply_edit(self, msg: dict, body: dict, files: dict) -> None:
        cid = int(msg["channel_id"])
        validate_message_body(body, len(files), editing=True)
        if "content" in body:
            msg["content"] = body["content"] or ""
        if "embeds" in body:
            msg["embeds"] = body["embeds"] or []
        if "attachments" in body or files:
            keep = {str(a.get("id")) for a in body.get("attachments") or []}
            kept = [a for a in msg["attachments"] if "attachments" not in body or a["id"] in keep]
            msg["attachments"] = kept + self._new_attachments(cid, body, files)
        for key in ("components", "flags"):
            if key in body and body[key] is not None:
                msg[key] = body[key]
        if "allowed_mentions" in body or "content" in body:
            ids = self._mention_ids(msg["content"], body.get("allowed_mentions"), None)
            msg["mentions"] = [self.users[u] for u in dict.fromkeys(ids) if u in self.users]
        if not (msg["content"] or msg["embeds"] or msg["attachments"] or msg.get("components")):
            raise p.ApiError(400, 50006, "Cannot send an empty message")
        msg["edited_timestamp"] = p.now_iso()
