"""`scope: server`: which channels and threads a member may search, on real discord.py objects.

Guilds are built from GUILD_CREATE payloads through discord.py's own ConnectionState, so the
channel, thread and member classes are the library's. The property test checks `server_scope`
against an oracle written here from Discord's documented permission algorithm
(https://discord.com/developers/docs/topics/permissions#permission-overwrites), not against
discord.py's `permissions_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import discord
from discord.state import ConnectionState
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.permissions import server_scope

# Permission bits, from Discord's documentation.
ADMINISTRATOR = 1 << 3
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
CONNECT = 1 << 20
READ = VIEW_CHANNEL | READ_MESSAGE_HISTORY
ALL = -1  # every bit set

# Channel types.
TEXT, VOICE, CATEGORY, NEWS, STAGE, FORUM = 0, 2, 4, 5, 13, 15
NEWS_THREAD, PUBLIC_THREAD, PRIVATE_THREAD = 10, 11, 12

GUILD_ID = 1000  # also the @everyone role's id
OWNER_ID = 1
MEMBER_ID = 50  # the asking member
OTHER_MEMBER_ID = 51  # someone else: their overwrites must not matter
ROLE_A, ROLE_B, ROLE_C = 201, 202, 203
ISO = "2024-05-01T12:00:00+00:00"


# --- the test's own model of a guild, turned into payloads and read by the oracle ----------


@dataclass(frozen=True)
class Overwrite:
    target: int
    is_member: bool = False
    allow: int = 0
    deny: int = 0


def everyone(allow: int = 0, deny: int = 0) -> Overwrite:
    return Overwrite(GUILD_ID, allow=allow, deny=deny)


def role(role_id: int, allow: int = 0, deny: int = 0) -> Overwrite:
    return Overwrite(role_id, allow=allow, deny=deny)


def member(user_id: int = MEMBER_ID, allow: int = 0, deny: int = 0) -> Overwrite:
    return Overwrite(user_id, is_member=True, allow=allow, deny=deny)


@dataclass(frozen=True)
class Channel:
    id: int
    type: int = TEXT
    nsfw: bool = False
    parent: int | None = None
    overwrites: tuple[Overwrite, ...] = ()


@dataclass(frozen=True)
class Thread:
    id: int
    parent: int
    private: bool = False


@dataclass(frozen=True)
class Server:
    everyone: int = READ | SEND_MESSAGES | CONNECT  # the @everyone role's permissions
    roles: dict[int, int] = field(default_factory=dict)  # role id -> permissions
    member_roles: tuple[int, ...] = ()
    channels: tuple[Channel, ...] = ()
    threads: tuple[Thread, ...] = ()
    owner_id: int = OWNER_ID

    def channel(self, channel_id: int) -> Channel:
        return next(c for c in self.channels if c.id == channel_id)


def _user(user_id: int) -> dict[str, Any]:
    name = f"user{user_id}"
    return {"id": str(user_id), "username": name, "discriminator": "0", "avatar": None}


def _role_payload(role_id: int, permissions: int, position: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": "@everyone" if role_id == GUILD_ID else f"role{role_id}",
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _channel_payload(channel: Channel, position: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(GUILD_ID),
        "name": f"channel{channel.id}",
        "position": position,
        "nsfw": channel.nsfw,
        "parent_id": None if channel.parent is None else str(channel.parent),
        "permission_overwrites": [
            {
                "id": str(o.target),
                "type": 1 if o.is_member else 0,
                "allow": str(o.allow),
                "deny": str(o.deny),
            }
            for o in channel.overwrites
        ],
    }
    if channel.type == FORUM:
        payload["available_tags"] = []
    if channel.type in (VOICE, STAGE):
        payload.update(bitrate=64000, user_limit=0)
    return payload


def _thread_payload(thread: Thread, parent: Channel) -> dict[str, Any]:
    if thread.private:
        kind = PRIVATE_THREAD
    else:
        kind = NEWS_THREAD if parent.type == NEWS else PUBLIC_THREAD
    return {
        "id": str(thread.id),
        "type": kind,
        "guild_id": str(GUILD_ID),
        "parent_id": str(thread.parent),
        "owner_id": str(OTHER_MEMBER_ID),
        "name": f"thread{thread.id}",
        "message_count": 3,
        "member_count": 2,
        "rate_limit_per_user": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": ISO,
            "locked": False,
            "invitable": True,
        },
    }


def _member_payload(user_id: int, roles: tuple[int, ...]) -> dict[str, Any]:
    return {
        "user": _user(user_id),
        "roles": [str(r) for r in roles],
        "joined_at": ISO,
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


def guild_create(server: Server) -> dict[str, Any]:
    """A GUILD_CREATE payload for `server`, in Discord's wire format."""
    roles = [_role_payload(GUILD_ID, server.everyone, 0)]
    roles += [_role_payload(r, p, i + 1) for i, (r, p) in enumerate(server.roles.items())]
    channels = {c.id: c for c in server.channels}
    return {
        "id": str(GUILD_ID),
        "name": "Glimpse test server",
        "owner_id": str(server.owner_id),
        "unavailable": False,
        "member_count": 2,
        "features": [],
        "roles": roles,
        "channels": [_channel_payload(c, i) for i, c in enumerate(server.channels)],
        "threads": [_thread_payload(t, channels[t.parent]) for t in server.threads],
        "members": [
            _member_payload(MEMBER_ID, server.member_roles),
            _member_payload(OTHER_MEMBER_ID, ()),
        ],
    }


def new_state() -> ConnectionState:
    return ConnectionState(
        dispatch=lambda *args, **kwargs: None,
        handlers={},
        hooks={},
        # Never used: nothing here talks to Discord.
        http=discord.http.HTTPClient(loop=discord.utils.MISSING),
        intents=discord.Intents.all(),
        chunk_guilds_at_startup=False,
    )


def build(server: Server) -> tuple[ConnectionState, discord.Guild, discord.Member]:
    """The guild as discord.py holds it after a real GUILD_CREATE, and the asking member."""
    state = new_state()
    state.parse_guild_create(guild_create(server))
    (guild,) = state.guilds
    asker = guild.get_member(MEMBER_ID)
    assert asker is not None
    return state, guild, asker


def scope_from(server: Server, origin_id: int) -> set[int]:
    _, guild, asker = build(server)
    origin = guild.get_channel_or_thread(origin_id)
    assert origin is not None
    return server_scope(asker, origin)


# --- the oracle: Discord's documented algorithm, written independently of discord.py --------


def base_permissions(server: Server) -> int:
    if server.owner_id == MEMBER_ID:
        return ALL
    permissions = server.everyone
    for role_id in server.member_roles:
        permissions |= server.roles[role_id]
    if permissions & ADMINISTRATOR:
        return ALL
    return permissions


def channel_permissions(server: Server, channel: Channel) -> int:
    permissions = base_permissions(server)
    if permissions == ALL:  # owner or administrator: overwrites do not apply
        return ALL
    overwrites = channel.overwrites
    for o in overwrites:
        if not o.is_member and o.target == GUILD_ID:
            permissions = (permissions & ~o.deny) | o.allow
    allow = deny = 0
    for o in overwrites:
        if not o.is_member and o.target in server.member_roles:
            allow |= o.allow
            deny |= o.deny
    permissions = (permissions & ~deny) | allow
    for o in overwrites:
        if o.is_member and o.target == MEMBER_ID:
            permissions = (permissions & ~o.deny) | o.allow
    if not permissions & VIEW_CHANNEL:
        return 0
    return permissions


def can_read(server: Server, channel: Channel) -> bool:
    # A voice channel's chat needs Connect too (message.mdx, "Get Channel Messages"); a stage
    # channel is a voice channel (channel.mdx, "Channel Types").
    needed = READ | CONNECT if channel.type in (VOICE, STAGE) else READ
    return channel_permissions(server, channel) & needed == needed


def thread_readable(server: Server, thread: Thread) -> bool:
    return can_read(server, server.channel(thread.parent))  # threads inherit the parent's


def origin_is_nsfw(server: Server, origin_id: int) -> bool:
    for thread in server.threads:
        if thread.id == origin_id:
            return server.channel(thread.parent).nsfw
    return server.channel(origin_id).nsfw


def oracle_scope(server: Server, origin_id: int) -> set[int]:
    nsfw_ok = origin_is_nsfw(server, origin_id)
    allowed = {
        c.id
        for c in server.channels
        if c.type not in (CATEGORY, FORUM) and can_read(server, c) and (nsfw_ok or not c.nsfw)
    }
    for thread in server.threads:
        parent = server.channel(thread.parent)
        if thread.private and thread.id != origin_id:
            continue
        if thread_readable(server, thread) and (nsfw_ok or not parent.nsfw):
            allowed.add(thread.id)
    return allowed


# --- hand-written scenarios -------------------------------------------------------------------


def test_readable_channels_and_forum_posts_count_but_not_categories_or_forums() -> None:
    server = Server(
        channels=(
            Channel(10, CATEGORY),
            Channel(11, TEXT, parent=10),
            Channel(12, NEWS),
            Channel(13, VOICE, parent=10),  # text chat in a voice channel holds images too
            Channel(14, FORUM),
        ),
        threads=(Thread(30, parent=14), Thread(31, parent=12)),
    )
    assert scope_from(server, 11) == {11, 12, 13, 30, 31}


def test_a_voice_or_stage_chat_needs_connect_too() -> None:
    no_connect = (member(deny=CONNECT),)
    server = Server(
        roles={ROLE_A: 0},
        channels=(
            Channel(11),
            Channel(12, VOICE),
            Channel(13, VOICE, overwrites=no_connect),  # viewable with history, no Connect
            Channel(14, STAGE),
            Channel(15, STAGE, overwrites=(everyone(deny=CONNECT), role(ROLE_A, allow=CONNECT))),
            Channel(16, overwrites=no_connect),  # Connect means nothing in a text channel
        ),
    )
    assert scope_from(server, 11) == {11, 12, 14, 16}
    assert scope_from(replace(server, member_roles=(ROLE_A,)), 11) == {11, 12, 14, 15, 16}
    assert scope_from(replace(server, everyone=READ | SEND_MESSAGES), 11) == {11, 16}


def test_viewing_without_reading_history_is_not_enough() -> None:
    server = Server(
        everyone=VIEW_CHANNEL | SEND_MESSAGES,
        roles={ROLE_A: 0},
        member_roles=(ROLE_A,),
        channels=(
            Channel(11),
            Channel(12, overwrites=(role(ROLE_A, allow=READ_MESSAGE_HISTORY),)),
            Channel(13, overwrites=(everyone(deny=READ_MESSAGE_HISTORY),)),
        ),
    )
    assert scope_from(server, 11) == {12}


def test_a_role_permission_adds_history_that_everyone_lacks() -> None:
    server = Server(
        everyone=VIEW_CHANNEL,
        roles={ROLE_A: READ_MESSAGE_HISTORY, ROLE_B: 0},
        member_roles=(ROLE_A,),
        channels=(Channel(11),),
    )
    assert scope_from(server, 11) == {11}
    assert scope_from(replace(server, member_roles=(ROLE_B,)), 11) == set()


def test_role_overwrite_opens_a_channel_closed_to_everyone() -> None:
    closed = (everyone(deny=VIEW_CHANNEL), role(ROLE_A, allow=VIEW_CHANNEL))
    server = Server(
        roles={ROLE_A: 0, ROLE_B: 0},
        member_roles=(ROLE_A,),
        channels=(Channel(11), Channel(12, overwrites=closed)),
    )
    assert scope_from(server, 11) == {11, 12}
    assert scope_from(replace(server, member_roles=(ROLE_B,)), 11) == {11}


def test_role_overwrites_combine_and_allow_wins_over_another_roles_deny() -> None:
    overwrites = (role(ROLE_A, deny=VIEW_CHANNEL), role(ROLE_B, allow=VIEW_CHANNEL))
    server = Server(
        roles={ROLE_A: 0, ROLE_B: 0},
        member_roles=(ROLE_A, ROLE_B),
        channels=(Channel(11), Channel(12, overwrites=overwrites)),
    )
    assert scope_from(server, 11) == {11, 12}
    assert scope_from(replace(server, member_roles=(ROLE_A,)), 11) == {11}


def test_role_overwrite_deny_beats_the_everyone_overwrite_allow() -> None:
    overwrites = (role(ROLE_A, deny=READ_MESSAGE_HISTORY), everyone(allow=READ))
    server = Server(
        everyone=0,
        roles={ROLE_A: 0},
        member_roles=(ROLE_A,),
        channels=(
            Channel(11, overwrites=(everyone(allow=READ),)),
            Channel(12, overwrites=overwrites),
        ),
    )
    assert scope_from(server, 11) == {11}


def test_member_overwrite_has_the_last_word() -> None:
    server = Server(
        roles={ROLE_A: 0},
        member_roles=(ROLE_A,),
        channels=(
            Channel(11),
            Channel(12, overwrites=(role(ROLE_A, allow=READ), member(deny=VIEW_CHANNEL))),
            Channel(13, overwrites=(everyone(deny=READ), member(allow=READ))),
        ),
    )
    assert scope_from(server, 11) == {11, 13}


def test_overwrites_for_other_members_and_roles_do_not_apply() -> None:
    server = Server(
        roles={ROLE_A: 0, ROLE_B: 0},
        member_roles=(ROLE_A,),
        channels=(
            Channel(11),
            Channel(12, overwrites=(member(OTHER_MEMBER_ID, deny=VIEW_CHANNEL),)),
            Channel(13, overwrites=(role(ROLE_B, deny=VIEW_CHANNEL),)),
            Channel(14, overwrites=(everyone(deny=VIEW_CHANNEL), role(ROLE_B, allow=READ))),
        ),
    )
    assert scope_from(server, 11) == {11, 12, 13}


def test_administrator_reads_every_channel_whatever_the_overwrites() -> None:
    server = Server(
        everyone=0,
        roles={ROLE_A: ADMINISTRATOR},
        member_roles=(ROLE_A,),
        channels=(
            Channel(11),
            Channel(12, overwrites=(role(ROLE_A, deny=READ), member(deny=READ))),
        ),
        threads=(Thread(30, parent=12),),
    )
    assert scope_from(server, 11) == {11, 12, 30}


def test_the_owner_reads_every_channel() -> None:
    server = Server(
        everyone=0,
        owner_id=MEMBER_ID,
        channels=(Channel(11), Channel(12, overwrites=(member(deny=READ),))),
    )
    assert scope_from(server, 11) == {11, 12}
    assert scope_from(replace(server, owner_id=OWNER_ID), 11) == set()


def test_nsfw_channels_only_from_an_nsfw_channel_or_one_of_its_threads() -> None:
    server = Server(
        channels=(
            Channel(11),
            Channel(12, nsfw=True),
            Channel(13, FORUM, nsfw=True),
            Channel(14, FORUM),
        ),
        threads=(Thread(30, parent=11), Thread(31, parent=12), Thread(32, 13), Thread(33, 14)),
    )
    sfw = {11, 30, 33}
    nsfw = sfw | {12, 31, 32}
    assert scope_from(server, 11) == sfw
    assert scope_from(server, 30) == sfw
    assert scope_from(server, 33) == sfw  # a post in a safe forum
    assert scope_from(server, 12) == nsfw
    assert scope_from(server, 31) == nsfw
    assert scope_from(server, 32) == nsfw  # a post in an NSFW forum


def test_a_direct_message_shows_no_nsfw_channel_not_even_the_thread_asked_from() -> None:
    """A bot cannot see whether the asker allowed age-restricted content in direct messages
    (application-commands.mdx, "Using Age-Restricted Commands"): the DM copy leaves every
    NSFW channel out, the origin too, a thread of one as much as the channel itself."""
    server = Server(
        channels=(Channel(11), Channel(12, nsfw=True)),
        threads=(Thread(30, parent=11), Thread(31, parent=12)),
    )
    _, guild, asker = build(server)
    for origin_id in (12, 31, 11, 30):
        origin = guild.get_channel_or_thread(origin_id)
        assert origin is not None
        assert server_scope(asker, origin, by_dm=True) == {11, 30}


def test_public_threads_follow_their_parents_permissions() -> None:
    server = Server(
        roles={ROLE_A: 0},
        member_roles=(ROLE_A,),
        channels=(
            Channel(11),
            Channel(12, overwrites=(role(ROLE_A, deny=READ_MESSAGE_HISTORY),)),
            Channel(13, FORUM, overwrites=(everyone(deny=VIEW_CHANNEL),)),
        ),
        threads=(Thread(30, parent=11), Thread(31, parent=12), Thread(32, parent=13)),
    )
    assert scope_from(server, 11) == {11, 30}


def test_private_threads_only_from_inside_themselves() -> None:
    server = Server(
        channels=(Channel(11), Channel(12)),
        threads=(Thread(30, 11, private=True), Thread(31, 11, private=True), Thread(32, 12)),
    )
    assert scope_from(server, 11) == {11, 12, 32}
    assert scope_from(server, 32) == {11, 12, 32}
    assert scope_from(server, 30) == {11, 12, 30, 32}


def test_scope_follows_role_and_overwrite_changes_as_they_arrive() -> None:
    """'Right now': the member's current roles and the channel's current overwrites count."""
    closed = (everyone(deny=VIEW_CHANNEL), role(ROLE_A, allow=VIEW_CHANNEL))
    server = Server(roles={ROLE_A: 0}, channels=(Channel(11), Channel(12, overwrites=closed)))
    state, guild, asker = build(server)
    origin = guild.get_channel(11)
    assert origin is not None
    assert server_scope(asker, origin) == {11}

    granted = {"guild_id": str(GUILD_ID), **_member_payload(MEMBER_ID, (ROLE_A,))}
    state.parse_guild_member_update(granted)  # type: ignore[arg-type]
    assert server_scope(asker, origin) == {11, 12}

    locked = replace(server.channel(12), overwrites=(everyone(deny=VIEW_CHANNEL),))
    state.parse_channel_update(_channel_payload(locked, 1))  # type: ignore[arg-type]
    assert server_scope(asker, origin) == {11}


def test_an_origin_thread_the_member_cannot_read_is_not_searched() -> None:
    # The member may post in #11 and its threads but not read their history.
    no_history = (role(ROLE_A, deny=READ_MESSAGE_HISTORY),)
    server = Server(
        roles={ROLE_A: 0},
        member_roles=(ROLE_A,),
        channels=(Channel(11, overwrites=no_history), Channel(12)),
        threads=(Thread(30, 11), Thread(31, 11, private=True)),
    )
    assert scope_from(server, 11) == {12}
    assert scope_from(server, 30) == {12}
    assert scope_from(server, 31) == {12}


# --- the property: server_scope agrees with the oracle ------------------------------------


@st.composite
def role_permissions(draw: st.DrawFn) -> int:
    permissions = 0
    chances = ((VIEW_CHANNEL, 4), (READ_MESSAGE_HISTORY, 4), (SEND_MESSAGES, 2), (CONNECT, 2))
    for bit, chance in chances:
        if draw(st.integers(0, chance)):  # mostly granted, sometimes not
            permissions |= bit
    if draw(st.integers(0, 7)) == 0:  # administrator now and then
        permissions |= ADMINISTRATOR
    return permissions


@st.composite
def overwrites(draw: st.DrawFn, role_ids: list[int]) -> tuple[Overwrite, ...]:
    targets = [(GUILD_ID, False), (MEMBER_ID, True), (OTHER_MEMBER_ID, True)]
    targets += [(r, False) for r in role_ids]
    chosen = draw(st.lists(st.sampled_from(targets), unique=True, max_size=4))
    result = []
    for target, is_member in chosen:
        allow = deny = 0
        for bit in (VIEW_CHANNEL, READ_MESSAGE_HISTORY, SEND_MESSAGES, CONNECT):
            choice = draw(st.sampled_from(["inherit", "allow", "deny"]))
            if choice == "allow":
                allow |= bit
            elif choice == "deny":
                deny |= bit
        result.append(Overwrite(target, is_member, allow, deny))
    return tuple(result)


@st.composite
def servers(draw: st.DrawFn) -> Server:
    role_ids = [ROLE_A, ROLE_B, ROLE_C][: draw(st.integers(1, 3))]
    roles = {r: draw(role_permissions()) for r in role_ids}
    member_roles = tuple(draw(st.lists(st.sampled_from(role_ids), unique=True)))
    owner = MEMBER_ID if draw(st.integers(0, 9)) == 0 else OWNER_ID

    categories = [
        Channel(100 + i, CATEGORY, overwrites=draw(overwrites(role_ids)))
        for i in range(draw(st.integers(0, 2)))
    ]
    channels: list[Channel] = []
    for i in range(draw(st.integers(1, 6))):
        # The first is somewhere to ask from; the rest are any kind.
        kinds = [TEXT, NEWS] if i == 0 else [TEXT, TEXT, NEWS, VOICE, STAGE, FORUM]
        kind = draw(st.sampled_from(kinds))
        parent = draw(st.sampled_from([None, *categories]))
        if parent is not None and draw(st.booleans()):
            own = parent.overwrites  # synced with its category
        else:
            own = draw(overwrites(role_ids))
        channels.append(
            Channel(
                400 + i,
                kind,
                nsfw=draw(st.booleans()),
                parent=None if parent is None else parent.id,
                overwrites=own,
            )
        )

    threads: list[Thread] = []
    parents = [c for c in channels if c.type in (TEXT, NEWS, FORUM)]
    if parents:
        for i in range(draw(st.integers(0, 4))):
            parent = draw(st.sampled_from(parents))
            private = parent.type == TEXT and draw(st.booleans())
            threads.append(Thread(600 + i, parent.id, private))

    return Server(
        everyone=draw(role_permissions()),
        roles=roles,
        member_roles=member_roles,
        channels=tuple(categories + channels),
        threads=tuple(threads),
        owner_id=owner,
    )


@settings(max_examples=250, deadline=None)
@given(server=servers(), data=st.data())
def test_server_scope_matches_discords_permission_algorithm(
    server: Server, data: st.DataObject
) -> None:
    origins = [c.id for c in server.channels if c.type not in (CATEGORY, FORUM)]
    # Asking from a thread one cannot read has its own test above.
    origins += [t.id for t in server.threads if thread_readable(server, t)]
    origin_id = data.draw(st.sampled_from(origins), label="origin")

    result = scope_from(server, origin_id)
    expected = oracle_scope(server, origin_id)

    channels = {c.id: c for c in server.channels}
    threads = {t.id: t for t in server.threads}
    nsfw_ok = origin_is_nsfw(server, origin_id)
    for found in result:
        if found in threads:
            thread = threads[found]
            assert thread_readable(server, thread), f"unreadable thread {found}"
            assert not thread.private or found == origin_id, f"private thread {found}"
            assert nsfw_ok or not channels[thread.parent].nsfw, f"NSFW thread {found}"
        else:
            channel = channels[found]
            assert channel.type not in (CATEGORY, FORUM), f"category or forum {found}"
            assert can_read(server, channel), f"unreadable channel {found}"
            assert nsfw_ok or not channel.nsfw, f"NSFW channel {found}"
    assert result == expected
