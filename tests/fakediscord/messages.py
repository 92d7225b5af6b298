"""Messages as Discord builds, stores and shows them (message.mdx, "Message Object").

REST gives a message without ``guild_id``/``member``; MESSAGE_CREATE/UPDATE add them
(gateway-events.mdx, "Message Create Extra Fields"), except for ephemeral messages, which reach
the bot as direct messages. Embeds a bot or webhook sends are stored as Discord stores them
(type ``rich``, images with ``proxy_url``/``width``/``height``); a member sees only the first of
several embeds that share a ``url`` ("Embed Limits"), recorded as ``visible_embeds``. Forwards
carry ``message_snapshots`` ("Message Snapshot Object").
"""

from __future__ import annotations

import copy
import mimetypes
from collections.abc import Sequence
from typing import Any

from . import payloads as p
from .limits import validate_message_body

#: What a forward's snapshot keeps of the message (message.mdx, "Message Snapshot Structure").
SNAPSHOT_FIELDS = (
    "type", "content", "embeds", "attachments", "timestamp", "edited_timestamp", "flags",
    "mentions", "mention_roles", "stickers", "sticker_items", "components",
)  # fmt: skip
#: Flags a bot may set when creating a message (message.mdx, "Create Message"), plus EPHEMERAL
#: for interaction responses.
SETTABLE_FLAGS = p.SUPPRESS_EMBEDS | p.SUPPRESS_NOTIFICATIONS | p.EPHEMERAL


def visible_embeds(embeds: Sequence[dict]) -> list[dict]:
    """What a member sees: embeds are deduplicated by URL, only the first is shown."""
    seen: set[str] = set()
    shown = []
    for embed in embeds:
        url = embed.get("url")
        if url is not None and url in seen:
            continue
        if url is not None:
            seen.add(url)
        shown.append(embed)
    return shown


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
        """A message payload as REST returns it; not stored."""
        msg_id = self.ids.next()
        if mention_ids is None:
            mention_ids = [int(u) for u in p.USER_MENTION.findall(content)]
        mentions = [self.users[u] for u in dict.fromkeys(mention_ids) if u in self.users]
        msg: dict[str, Any] = {
            "id": str(msg_id), "channel_id": str(channel_id), "type": p.DEFAULT_MESSAGE,
            "content": content, "author": self.users[author_id],
            "attachments": list(attachments), "embeds": list(embeds), "mentions": mentions,
            "mention_roles": p.ROLE_MENTION.findall(content),
            "mention_everyone": "@everyone" in content or "@here" in content,
            "pinned": False, "tts": False, "timestamp": p.snowflake_time_iso(msg_id),
            "edited_timestamp": None, "flags": flags, "components": [],
        }  # fmt: skip
        if webhook_id is not None:
            msg["webhook_id"] = str(webhook_id)
        if reply_to is not None:
            msg.update(self.reference_to(channel_id, reply_to))
        msg["type"] = msg_type if msg_type is not None else (p.REPLY if reply_to is not None else 0)
        msg.update(extra)
        return msg

    def reference_to(self, channel_id: int, message_id: int) -> dict[str, Any]:
        """``message_reference`` (type 0) and ``referenced_message`` of a reply."""
        channel = self.channels[channel_id]
        ref: dict[str, Any] = {
            "type": 0,
            "message_id": str(message_id),
            "channel_id": str(channel_id),
        }
        if "guild_id" in channel:
            ref["guild_id"] = channel["guild_id"]
        target = self.messages[channel_id].get(message_id)
        basic = None
        if target is not None:
            skip = ("referenced_message", "message_snapshots", "interaction_metadata")
            basic = {k: v for k, v in target.items() if k not in skip}
        return {"message_reference": ref, "referenced_message": basic}

    def forward_of(self, source_channel_id: int, source_id: int) -> dict[str, Any]:
        """The fields that make a message a forward of another one (message.mdx, "Forwards")."""
        source = self.messages[source_channel_id][source_id]
        if source["type"] not in (
            p.DEFAULT_MESSAGE,
            p.REPLY,
            p.CHAT_INPUT_COMMAND,
            p.CONTEXT_MENU_COMMAND,
        ):
            raise ValueError("only basic messages can be forwarded")
        snapshot = {k: copy.deepcopy(source[k]) for k in SNAPSHOT_FIELDS if k in source}
        ref: dict[str, Any] = {
            "type": 1,
            "message_id": str(source_id),
            "channel_id": str(source_channel_id),
        }
        guild_id = self.channels[source_channel_id].get("guild_id")
        if guild_id:
            ref["guild_id"] = guild_id
        return {"message_reference": ref, "message_snapshots": [{"message": snapshot}]}

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
        """MESSAGE_CREATE/UPDATE form: ``guild_id``, and ``member`` for members' messages; an
        ephemeral message has neither (gateway-events.mdx, "Messages")."""
        out = copy.copy(self.refresh_urls(msg))
        guild = self.guild_of(int(msg["channel_id"]))
        if guild is None or msg["flags"] & p.EPHEMERAL:
            return out
        out["guild_id"] = str(guild.id)
        author = int(msg["author"]["id"])
        if "webhook_id" not in msg and author in guild.members:
            out["member"] = self.member_payload(guild.id, author, with_user=False)
        return out

    def content_visible_without_intent(self, msg: dict) -> bool:
        """DMs, the bot's own messages and messages mentioning the bot keep their content."""
        return (
            self.guild_of(int(msg["channel_id"])) is None
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
                    spoiler=bool(info.get("is_spoiler")),
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
        attachments = self._new_attachments(cid, body, files, ephemeral=ephemeral)
        embeds = [self.fill_embed(e, attachments) for e in body.get("embeds") or []]
        if check_embeds and not self.permissions_for(cid, self.bot_id) & p.EMBED_LINKS:
            # Without Embed Links a message's embeds are dropped, and a message of embeds alone
            # is refused as Missing Permissions (discord/discord-api-docs#2601).
            if embeds and not (body.get("content") or attachments or body.get("components")):
                raise p.missing_permissions()
            embeds = []
        reply_author = None
        if reply_to is not None:
            reply_author = int(self.messages[cid][reply_to]["author"]["id"])
        content = body.get("content") or ""
        mentions = self._mention_ids(content, body.get("allowed_mentions"), reply_author)
        msg = self.build_message(
            cid,
            self.bot_id,
            content,
            embeds=embeds,
            attachments=attachments,
            reply_to=reply_to,
            mention_ids=mentions,
            flags=int(body.get("flags") or 0) & SETTABLE_FLAGS,
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
            visible_embeds=visible_embeds(entry["embeds"]),
            **extra,
        )
        self._append_sent(entry)
        return entry

    def _apply_edit(self, msg: dict, body: dict, files: dict) -> None:
        cid = int(msg["channel_id"])
        validate_message_body(body, len(files), editing=True)
        if "content" in body:
            msg["content"] = body["content"] or ""
        if "attachments" in body or files:
            meta = {str(a.get("id")): a for a in body.get("attachments") or []}
            kept = [a for a in msg["attachments"] if "attachments" not in body or a["id"] in meta]
            for att in kept:
                self._edit_attachment(att, meta.get(att["id"], {}))
            msg["attachments"] = kept + self._new_attachments(cid, body, files)
        if "embeds" in body:
            msg["embeds"] = [self.fill_embed(e, msg["attachments"]) for e in body["embeds"] or []]
        if body.get("components") is not None:
            msg["components"] = body["components"]
        if body.get("flags") is not None:
            # Only these flags change on an edit (message.mdx, "Edit Message", JSON Params); an
            # ephemeral message stays ephemeral and a public one public, whatever the body asks.
            editable = p.SUPPRESS_EMBEDS | p.IS_COMPONENTS_V2
            msg["flags"] = (msg["flags"] & ~editable) | (int(body["flags"]) & editable)
        if "allowed_mentions" in body or "content" in body:
            ids = self._mention_ids(msg["content"], body.get("allowed_mentions"), None)
            msg["mentions"] = [self.users[u] for u in dict.fromkeys(ids) if u in self.users]
        if not (msg["content"] or msg["embeds"] or msg["attachments"] or msg.get("components")):
            raise p.ApiError(400, 50006, "Cannot send an empty message")
        msg["edited_timestamp"] = self.clock.iso()

    @staticmethod
    def _edit_attachment(att: dict, change: dict) -> None:
        """An edit may change a kept attachment's alt text and spoiler flag (message.mdx,
        "Attachment Request Structure")."""
        if "description" in change:
            if change["description"]:
                att["description"] = change["description"]
            else:
                att.pop("description", None)
        if "is_spoiler" in change:
            spoiler = p.IS_SPOILER if change["is_spoiler"] else 0
            att["flags"] = (att.get("flags", 0) & ~p.IS_SPOILER) | spoiler
