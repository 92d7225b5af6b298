"""What the gateway sends, as Discord documents it.

The OpenAPI description covers REST only. Here the gateway's frames are checked against the
field tables of Discord's developer documentation (pages of discord/discord-api-docs, cited per
schema), transcribed as JSON schemas; wherever a table's field is an object the spec describes (a
message, channel, member, role, user, attachment...), the spec's own schema is used for it.
Objects are closed: a field the table or the spec does not name is an error.
"""

from __future__ import annotations

from typing import Any

from .validate import component, ref, schema_errors

SNOWFLAKE = ref("SnowflakeType")
INTEGER = {"type": "integer"}
STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
TIMESTAMP = {"type": "string", "format": "date-time"}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def table(required: dict[str, dict], optional: dict[str, dict] | None = None) -> dict:
    """A documented structure: fields without ``?`` are required, none other is allowed."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


# gateway-events.mdx, "Payload Structure": op, d, s, t (s and t null unless op is 0).
ENVELOPE = table({"op": INTEGER, "d": {}, "s": {"type": ["integer", "null"]},
                  "t": {"type": ["string", "null"]}})  # fmt: skip
# "Hello Structure"; "Invalid Session" (d: resumable); "Reconnect" and heartbeat ACK carry null.
HELLO = table({"heartbeat_interval": INTEGER})
OPCODE_DATA = {10: HELLO, 11: {"type": "null"}, 7: {"type": "null"}, 9: BOOLEAN,
               1: {"type": ["integer", "null"]}}  # fmt: skip

# guild.mdx, "Unavailable Guild Object" (as listed in READY and sent by GUILD_DELETE).
UNAVAILABLE_GUILD = table({"id": SNOWFLAKE}, {"unavailable": BOOLEAN})
# "Ready Event Fields"; the user "including email" is the spec's UserPIIResponse.
READY = table(
    {"v": INTEGER, "user": ref("UserPIIResponse"), "guilds": array(UNAVAILABLE_GUILD),
     "session_id": STRING, "resume_gateway_url": STRING,
     "application": table({"id": SNOWFLAKE, "flags": INTEGER})},
    {"shard": {"type": "array", "items": INTEGER, "minItems": 2, "maxItems": 2}},
)  # fmt: skip
# "Resumed": no fields documented.
RESUMED = table({})

CHANNEL = {"oneOf": [ref("GuildChannelResponse"), ref("PrivateChannelResponse")]}
THREAD = ref("ThreadResponse")
# channel.mdx, "Thread Member Structure": in GUILD_CREATE without ``id`` and ``user_id``.
GUILD_CREATE_THREAD = component(
    "ThreadResponse",
    extra={"member": component("ThreadMemberResponse", optional=("id", "user_id"))},
)
# "Guild Create Extra Fields" on the spec's guild.
GUILD_CREATE = component(
    "GuildResponse",
    extra={
        "joined_at": TIMESTAMP, "large": BOOLEAN, "unavailable": BOOLEAN,
        "member_count": INTEGER, "voice_states": array({"type": "object"}),
        "members": array(ref("GuildMemberResponse")), "channels": array(CHANNEL),
        "threads": array(GUILD_CREATE_THREAD), "presences": array({"type": "object"}),
        "stage_instances": array({"type": "object"}),
        "guild_scheduled_events": array(ref("ScheduledEventResponse")),
        "soundboard_sounds": array(ref("SoundboardSoundResponse")),
    },
)  # fmt: skip
GUILD_CREATE["required"] += ["joined_at", "large", "member_count", "voice_states", "members",
                             "channels", "threads", "presences", "stage_instances",
                             "guild_scheduled_events", "soundboard_sounds"]  # fmt: skip

# "Message Create Extra Fields": guild_id?, member? (partial: no user), channel_type?.
PARTIAL_MEMBER = component("GuildMemberResponse", optional=("user", "deaf", "mute"))
MESSAGE = component(
    "MessageResponse",
    extra={"guild_id": SNOWFLAKE, "member": PARTIAL_MEMBER, "channel_type": INTEGER},
)
# "Guild Member Add/Update": a guild member with an extra guild_id.
MEMBER_WITH_GUILD = component("GuildMemberResponse", extra={"guild_id": SNOWFLAKE})
MEMBER_WITH_GUILD["required"].append("guild_id")
THREAD_MEMBER_WITH_GUILD = component("ThreadMemberResponse", extra={"guild_id": SNOWFLAKE})

# receiving-and-responding.mdx, "Interaction Structure" and the structures it points to.
RESOLVED_CHANNEL = table(
    {"id": SNOWFLAKE, "name": STRING, "type": INTEGER, "permissions": STRING},
    {k: {} for k in ("app_permissions", "last_message_id", "last_pin_timestamp", "nsfw",
                     "parent_id", "guild_id", "flags", "rate_limit_per_user", "topic",
                     "position", "thread_metadata")},
)  # fmt: skip
RESOLVED = table({}, {
    "users": {"type": "object", "additionalProperties": ref("UserResponse")},
    "members": {"type": "object", "additionalProperties": component(
        "PrivateGuildMemberResponse", optional=("user", "deaf", "mute"))},
    "roles": {"type": "object", "additionalProperties": ref("GuildRoleResponse")},
    "channels": {"type": "object", "additionalProperties": RESOLVED_CHANNEL},
    "messages": {"type": "object", "additionalProperties": ref("MessageResponse")},
    "attachments": {"type": "object", "additionalProperties": ref("MessageAttachmentResponse")},
})  # fmt: skip
OPTION: dict[str, Any] = table(
    {"name": STRING, "type": INTEGER},
    {"value": {"type": ["string", "integer", "number", "boolean"]}, "focused": BOOLEAN},
)
OPTION["properties"]["options"] = array(OPTION)
COMMAND_DATA = table(
    {"id": SNOWFLAKE, "name": STRING, "type": INTEGER},
    {"resolved": RESOLVED, "options": array(OPTION), "guild_id": SNOWFLAKE,
     "target_id": SNOWFLAKE},
)  # fmt: skip
INTERACTION = table(
    {"id": SNOWFLAKE, "application_id": SNOWFLAKE, "type": INTEGER, "token": STRING,
     "version": {"const": 1}, "app_permissions": STRING, "entitlements": array({}),
     "authorizing_integration_owners": {"type": "object", "additionalProperties": SNOWFLAKE},
     "attachment_size_limit": INTEGER},
    {"data": COMMAND_DATA, "guild": table({"id": SNOWFLAKE}, {"locale": STRING,
                                                             "features": array(STRING)}),
     "guild_id": SNOWFLAKE, "channel": {"oneOf": [ref("GuildChannelResponse"),
                                                   ref("ThreadResponse"),
                                                   ref("PrivateChannelResponse")]},
     "channel_id": SNOWFLAKE, "member": ref("PrivateGuildMemberResponse"),
     "user": ref("UserResponse"), "message": ref("MessageResponse"), "locale": STRING,
     "guild_locale": STRING, "context": {"enum": [0, 1, 2]}},
)  # fmt: skip

# gateway-events.mdx, one schema per dispatch (section names as there).
DISPATCH: dict[str, dict] = {
    "READY": READY,
    "RESUMED": RESUMED,
    "GUILD_CREATE": GUILD_CREATE,
    "GUILD_DELETE": UNAVAILABLE_GUILD,
    "GUILD_ROLE_CREATE": table({"guild_id": SNOWFLAKE, "role": ref("GuildRoleResponse")}),
    "GUILD_ROLE_UPDATE": table({"guild_id": SNOWFLAKE, "role": ref("GuildRoleResponse")}),
    "GUILD_ROLE_DELETE": table({"guild_id": SNOWFLAKE, "role_id": SNOWFLAKE}),
    "GUILD_MEMBER_ADD": MEMBER_WITH_GUILD,
    "GUILD_MEMBER_UPDATE": MEMBER_WITH_GUILD,
    "GUILD_MEMBERS_CHUNK": table(
        {"guild_id": SNOWFLAKE, "members": array(ref("GuildMemberResponse")),
         "chunk_index": INTEGER, "chunk_count": INTEGER},
        {"not_found": array({}), "presences": array({}), "nonce": STRING},
    ),
    "CHANNEL_CREATE": CHANNEL,
    "CHANNEL_UPDATE": CHANNEL,
    "CHANNEL_DELETE": CHANNEL,
    "THREAD_CREATE": component("ThreadResponse", extra={"newly_created": BOOLEAN}),
    "THREAD_UPDATE": THREAD,
    "THREAD_DELETE": table({"id": SNOWFLAKE, "guild_id": SNOWFLAKE, "parent_id": SNOWFLAKE,
                            "type": INTEGER}),
    "THREAD_LIST_SYNC": table(
        {"guild_id": SNOWFLAKE, "threads": array(THREAD),
         "members": array(ref("ThreadMemberResponse"))},
        {"channel_ids": array(SNOWFLAKE)},
    ),
    "THREAD_MEMBER_UPDATE": THREAD_MEMBER_WITH_GUILD,
    "MESSAGE_CREATE": MESSAGE,
    "MESSAGE_UPDATE": MESSAGE,
    "MESSAGE_DELETE": table({"id": SNOWFLAKE, "channel_id": SNOWFLAKE}, {"guild_id": SNOWFLAKE}),
    "MESSAGE_DELETE_BULK": table({"ids": array(SNOWFLAKE), "channel_id": SNOWFLAKE},
                                 {"guild_id": SNOWFLAKE}),
    # "Message Reaction Add Event Fields": the emoji is a partial emoji (the spec's reaction
    # emoji), the member who reacted a guild member with its user.
    "MESSAGE_REACTION_ADD": table(
        {"user_id": SNOWFLAKE, "channel_id": SNOWFLAKE, "message_id": SNOWFLAKE,
         "emoji": ref("MessageReactionEmojiResponse"), "burst": BOOLEAN, "type": INTEGER},
        {"guild_id": SNOWFLAKE, "member": ref("GuildMemberResponse"),
         "message_author_id": SNOWFLAKE, "burst_colors": array(STRING)},
    ),
    "INTERACTION_CREATE": INTERACTION,
}  # fmt: skip


def frame_errors(frame: Any) -> list[str]:
    """Every way a gateway frame differs from the documentation (empty when it matches)."""
    errors = schema_errors(frame, ENVELOPE, "frame")
    if errors:
        return errors
    op, t = frame["op"], frame["t"]
    if op != 0:
        if frame["s"] is not None or t is not None:
            errors.append(f"op {op}: s and t must be null")
        schema = OPCODE_DATA.get(op)
        if schema is None:
            return [*errors, f"op {op}: not an opcode the gateway sends"]
        return errors + schema_errors(frame["d"], schema, f"op {op}.d")
    if not isinstance(frame["s"], int) or t is None:
        return [f"dispatch {t}: needs a sequence number and an event name"]
    schema = DISPATCH.get(t)
    if schema is None:
        return [f"dispatch {t}: no schema for this event here (add one, citing its page)"]
    return schema_errors(frame["d"], schema, t)
