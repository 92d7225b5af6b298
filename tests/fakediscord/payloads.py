"""Discord API payload builders, constants and small helpers for the fake server.

Everything here produces dictionaries in Discord's own wire format (snowflakes as strings,
ISO-8601 timestamps, permissions as decimal strings), so that discord.py parses them with its
ordinary code paths.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from aiohttp import web

DISCORD_EPOCH_MS = 1420070400000

# --- permission bits (https://discord.com/developers/docs/topics/permissions) -------------
CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
MANAGE_ROLES = 1 << 28
#: Values of discord.py's Permissions.all() / all_channel() / voice() (2.7.1).
ALL_PERMISSIONS = 8866461766385663
ALL_CHANNEL_PERMISSIONS = 8555290110197585
VOICE_PERMISSIONS = 321607217185536

#: The README's invite link (permissions=274877991936): View Channel, Send Messages, Send Messages
#: in Threads, Embed Links, Read Message History (tests/test_fakediscord_fidelity.py reads it).
INVITE_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | SEND_MESSAGES_IN_THREADS | EMBED_LINKS | READ_MESSAGE_HISTORY
)
assert INVITE_PERMISSIONS == 274877991936
#: The bot's managed role: exactly what the invite link grants.
DEFAULT_BOT_PERMISSIONS = INVITE_PERMISSIONS
#: @everyone of a test guild: members may read, post and link in channels and threads (their
#: uploads are not checked against Attach Files), and nothing the invite does not grant, so
#: that the bot's effective permissions (@everyone included) are exactly the invite's. Tests
#: that need more grant it explicitly.
DEFAULT_EVERYONE_PERMISSIONS = INVITE_PERMISSIONS
#: The role every member but the bot holds, as a server's autorole gives it: Use Application
#: Commands, which a member's client needs to offer any command (permissions.mdx, "Permission
#: Flags"). In a new server @everyone has it (our assumption: these pages do not list the
#: default role's permissions); here a role carries it, so that the bot does not. A member's
#: base permissions are @everyone's and their roles' together (permissions.mdx, "Permission
#: Overwrites"), so members hold it all the same. A test takes it away with a channel overwrite.
MEMBERS_ROLE_PERMISSIONS = USE_APPLICATION_COMMANDS
#: What a DM channel allows.
DM_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
    | ADD_REACTIONS | USE_EXTERNAL_EMOJIS | MENTION_EVERYONE | USE_APPLICATION_COMMANDS
)  # fmt: skip

# --- gateway intents --------------------------------------------------------------------
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# --- channel types ------------------------------------------------------------------------
TEXT, DM, VOICE, CATEGORY, NEWS = 0, 1, 2, 4, 5
PUBLIC_THREAD, PRIVATE_THREAD, FORUM = 11, 12, 15
THREAD_TYPES = (10, PUBLIC_THREAD, PRIVATE_THREAD)

# channel.mdx, "Channel Flags": members opt in to see the channel's contents
IS_SPOILER_CHANNEL = 1 << 21
# message flags (message.mdx, "Message Flags") and attachment flags ("Attachment Flags")
SUPPRESS_EMBEDS = 1 << 2
HAS_THREAD = 1 << 5
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15
HAS_SNAPSHOT = 1 << 14
IS_SPOILER = 1 << 3

# message types (message.mdx, "Message Types")
DEFAULT_MESSAGE, REPLY, CHAT_INPUT_COMMAND, CONTEXT_MENU_COMMAND = 0, 19, 20, 23
THREAD_CREATED, THREAD_STARTER_MESSAGE = 18, 21

MAX_FILE_SIZE = 10 * 1024 * 1024


class Snowflakes:
    """Generates Discord snowflakes that increase strictly with time (thread-safe)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            value = (int(self._now() * 1000) - DISCORD_EPOCH_MS) << 22
            self._last = max(value, self._last + 1)
            return self._last


def snowflake_time_iso(snowflake: int) -> str:
    """The ISO-8601 creation time encoded in a snowflake."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


# --- HTTP helpers --------------------------------------------------------------------------


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response with exactly ``Content-Type: application/json`` (no charset)."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


class ApiError(Exception):
    """Raised by handlers; turned into Discord's JSON error body ``{"message", "code"}``."""

    def __init__(self, status: int, code: int, message: str, errors: dict | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def response(self) -> web.Response:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return json_response(body, self.status)


def unknown(what: str) -> ApiError:
    codes = {
        "Channel": 10003,
        "Guild": 10004,
        "Member": 10007,
        "Message": 10008,
        "User": 10013,
        "Webhook": 10015,
        "interaction": 10062,
        "application command": 10063,
    }
    return ApiError(404, codes[what], f"Unknown {what}")


def missing_access() -> ApiError:
    return ApiError(403, 50001, "Missing Access")


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def form_error(field: str, code: str, message: str) -> ApiError:
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field.split(".")):
        errors = {part: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


# --- object payloads ------------------------------------------------------------------------


def user_payload(user_id: int, name: str, *, bot: bool = False) -> dict:
    return {
        "id": str(user_id), "username": name, "global_name": None if bot else name,
        "discriminator": "0", "avatar": None, "avatar_decoration_data": None,
        "banner": None, "accent_color": None, "public_flags": 0, "flags": 0, "bot": bot,
        "system": False, "primary_guild": None, "collectibles": None,
    }  # fmt: skip


def role_payload(
    role_id: int, name: str, permissions: int, position: int, *, managed_for: int | None = None
) -> dict:
    role = {
        "id": str(role_id), "name": name, "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False, "icon": None, "unicode_emoji": None, "position": position,
        "permissions": str(permissions), "managed": managed_for is not None,
        "mentionable": False, "flags": 0,
    }  # fmt: skip
    if managed_for is not None:
        role["tags"] = {"bot_id": str(managed_for)}
    return role


def member_payload(
    user: dict | None,
    roles: list[int],
    joined_at: str,
    *,
    nick: str | None = None,
    permissions: int | None = None,
) -> dict:
    """A guild member; ``user=None`` gives the form embedded in messages (no ``user`` key)."""
    member: dict[str, Any] = {
        "roles": [str(r) for r in roles], "joined_at": joined_at, "nick": nick,
        "avatar": None, "banner": None, "premium_since": None, "deaf": False, "mute": False,
        "flags": 0, "pending": False, "communication_disabled_until": None,
    }  # fmt: skip
    if user is not None:
        member["user"] = user
    if permissions is not None:
        member["permissions"] = str(permissions)
    return member


def overwrite_payload(ow: dict) -> dict:
    return {
        "id": str(ow["id"]),
        "type": int(ow.get("type", 0)),
        "allow": str(int(ow.get("allow", 0))),
        "deny": str(int(ow.get("deny", 0))),
    }


def check_spoiler_channel(kind: int, nsfw: bool, spoiler: bool) -> None:
    """IS_SPOILER_CHANNEL is refused on NSFW channels, stages and non-text channels
    (channel.mdx, "Channel Flags")."""
    if spoiler and (nsfw or kind not in (TEXT, VOICE, NEWS, 15, 16)):
        raise ValueError("only a textual or voice channel that is not NSFW can be a spoiler one")


def guild_channel_payload(
    channel_id: int,
    guild_id: int,
    name: str,
    kind: int,
    position: int,
    *,
    parent_id: int | None,
    nsfw: bool,
    overwrites: list[dict],
    flags: int = 0,
) -> dict:
    channel: dict[str, Any] = {
        "id": str(channel_id), "type": kind, "guild_id": str(guild_id), "name": name,
        "position": position, "permission_overwrites": [overwrite_payload(o) for o in overwrites],
        "nsfw": nsfw, "parent_id": None if parent_id is None else str(parent_id), "flags": flags,
    }  # fmt: skip
    if kind != CATEGORY:
        channel.update({"topic": None, "last_message_id": None, "rate_limit_per_user": 0})
    if kind in (VOICE, 13):
        channel.update(
            {"bitrate": 64000, "user_limit": 0, "rtc_region": None, "video_quality_mode": 1}
        )
    if kind == FORUM:
        channel.update(
            {
                "available_tags": [],
                "default_reaction_emoji": None,
                "default_sort_order": None,
                "default_forum_layout": 0,
                "default_thread_rate_limit_per_user": 0,
            }
        )
    return channel


def thread_payload(
    thread_id: int, parent: dict, name: str, owner_id: int, *, private: bool, member_count: int
) -> dict:
    created = snowflake_time_iso(thread_id)
    return {
        "id": str(thread_id), "type": PRIVATE_THREAD if private else PUBLIC_THREAD,
        "guild_id": parent["guild_id"], "parent_id": parent["id"], "owner_id": str(owner_id),
        "name": name, "last_message_id": None, "rate_limit_per_user": 0, "message_count": 0,
        "member_count": member_count, "total_message_sent": 0, "flags": 0,
        "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                            "archive_timestamp": created, "locked": False,
                            "invitable": True, "create_timestamp": created},
    }  # fmt: skip


def dm_channel_payload(channel_id: int, recipient: dict) -> dict:
    return {
        "id": str(channel_id),
        "type": DM,
        "last_message_id": None,
        "flags": 0,
        "recipients": [recipient],
    }


# --- permissions ------------------------------------------------------------------------------


def apply_overwrites(
    base: int, overwrites: list[dict], everyone_id: int, role_ids: list[int], member_id: int
) -> int:
    """Apply channel overwrites: @everyone, then roles (deny, allow), then the member."""
    by_id = {(int(o["id"]), int(o["type"])): o for o in overwrites}
    perms = base
    ow = by_id.get((everyone_id, 0))
    if ow:
        perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
    allow = deny = 0
    for rid in role_ids:
        ow = by_id.get((rid, 0))
        if ow:
            allow |= int(ow["allow"])
            deny |= int(ow["deny"])
    perms = (perms & ~deny) | allow
    ow = by_id.get((member_id, 1))
    if ow:
        perms = (perms & ~int(ow["deny"])) | int(ow["allow"])
    return perms


#: GUILD_VOICE and GUILD_STAGE_VOICE, a kind of voice channel (channel.mdx, "Channel Types"):
#: Connect applies to both (permissions.mdx, "Bitwise Permission Flags").
VOICE_BASED = (VOICE, 13)


def implicit_permissions(perms: int, channel_type: int) -> int:
    """The implicit denials Discord (and discord.py's ``permissions_for``) apply."""
    if not perms & SEND_MESSAGES:
        perms &= ~(SEND_TTS_MESSAGES | MENTION_EVERYONE | EMBED_LINKS | ATTACH_FILES)
    if not perms & VIEW_CHANNEL:
        perms &= ~ALL_CHANNEL_PERMISSIONS
    if channel_type in VOICE_BASED:
        if not perms & CONNECT:
            perms &= ~(VOICE_PERMISSIONS | MANAGE_CHANNELS | MANAGE_ROLES)
    elif channel_type != CATEGORY:
        perms &= ~VOICE_PERMISSIONS
    return perms


# --- messages --------------------------------------------------------------------------------

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")


def strip_content(message: dict) -> dict:
    """What an app without the message content intent sees (gateway.mdx, "Message Content
    Intent"): content fields empty, in a forward's snapshot too."""
    out = dict(message)
    out.update(content="", embeds=[], attachments=[], components=[])
    out.pop("poll", None)
    if out.get("message_snapshots"):
        out["message_snapshots"] = [
            {"message": dict(s["message"], content="", embeds=[], attachments=[], components=[])}
            for s in out["message_snapshots"]
        ]
    return out


class Upload(NamedTuple):
    """A file a member attaches: ``(filename, data, content_type)``, optionally with alt text
    (``description``) and marked as a spoiler (attachment flag IS_SPOILER)."""

    filename: str
    data: bytes
    content_type: str | None
    description: str | None = None
    spoiler: bool = False
