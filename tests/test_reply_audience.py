"""Whether a public reply may show a channel's earlier images: only where everyone who sees the
channel may read its history. On real discord.py objects, built as tests/test_permissions.py
builds them."""

from __future__ import annotations

from dataclasses import replace

from bot.chat.permissions import audience_reads_history
from tests.test_permissions import (
    CONNECT,
    MEMBER_ID,
    READ,
    READ_MESSAGE_HISTORY,
    ROLE_A,
    ROLE_B,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    VOICE,
    Channel,
    Server,
    Thread,
    build,
    everyone,
    guild_create,
    member,
    new_state,
    role,
)

NOT_CACHED = 77  # a member overwrite's target that discord.py does not hold


def reads(server: Server, channel_id: int) -> bool:
    _, guild, _ = build(server)
    channel = guild.get_channel_or_thread(channel_id)
    assert channel is not None
    return audience_reads_history(channel)


def test_where_everyone_reads_the_history_a_reply_may_show_it() -> None:
    server = Server(channels=(Channel(11), Channel(12, overwrites=(role(ROLE_A, allow=READ),))))
    server = replace(server, roles={ROLE_A: 0})
    assert reads(server, 11) and reads(server, 12)
    assert audience_reads_history(object())  # a DM: the asker alone


def test_one_role_that_sees_without_the_history_is_enough_to_say_no() -> None:
    no_history = (role(ROLE_B, deny=READ_MESSAGE_HISTORY),)
    closed = (everyone(deny=VIEW_CHANNEL), role(ROLE_A, allow=VIEW_CHANNEL))
    server = Server(
        roles={ROLE_A: 0, ROLE_B: 0},
        channels=(Channel(11, overwrites=no_history), Channel(12, overwrites=closed)),
    )
    assert not reads(server, 11)
    assert reads(server, 12)  # ROLE_A's members read the history @everyone's permissions give
    # @everyone sees the server without history; a role gives it to its members only.
    low = replace(
        server,
        everyone=VIEW_CHANNEL | SEND_MESSAGES,
        roles={ROLE_A: READ_MESSAGE_HISTORY},
        channels=(Channel(12, overwrites=closed), Channel(13)),
    )
    assert reads(low, 12)  # only ROLE_A sees it, and reads it
    assert not reads(low, 13)


def test_member_overwrites_count_with_or_without_the_member_in_the_cache() -> None:
    closed = everyone(deny=VIEW_CHANNEL)
    server = Server(
        everyone=VIEW_CHANNEL | SEND_MESSAGES,
        roles={ROLE_A: READ_MESSAGE_HISTORY},
        member_roles=(ROLE_A,),
        channels=(
            Channel(11, overwrites=(closed, member(MEMBER_ID, allow=VIEW_CHANNEL))),
            Channel(12, overwrites=(closed, member(NOT_CACHED, allow=VIEW_CHANNEL))),
            Channel(13, overwrites=(closed, member(NOT_CACHED, allow=READ))),
        ),
    )
    assert reads(server, 11)  # the cached member's role gives the history
    assert not reads(server, 12)  # judged by @everyone's permissions alone
    assert reads(server, 13)
    denied = Channel(14, overwrites=(member(MEMBER_ID, deny=READ_MESSAGE_HISTORY),))
    assert not reads(replace(server, everyone=READ, channels=(denied,)), 14)


def test_threads_are_judged_by_their_parent_and_voice_chat_needs_connect() -> None:
    no_history = (everyone(deny=READ_MESSAGE_HISTORY),)
    server = Server(
        channels=(Channel(11, overwrites=no_history), Channel(12)),
        threads=(Thread(21, parent=11), Thread(22, parent=12, private=True)),
    )
    assert not reads(server, 21) and reads(server, 22)
    server = Server(everyone=VIEW_CHANNEL | SEND_MESSAGES, channels=(Channel(13, VOICE),))
    assert reads(server, 13)  # no one sees its chat without Connect
    assert not reads(replace(server, everyone=VIEW_CHANNEL | CONNECT), 13)


def test_an_overwrite_that_takes_the_history_away_may_meet_another_that_shows_the_channel() -> None:
    """A member's roles combine, role allows winning over role denies, and an uncached
    member's roles are unknown: such an overwrite is enough to say no, unless it is a member's
    that hides the channel too (a member's overwrite has the last word)."""
    closed = (everyone(deny=VIEW_CHANNEL), role(ROLE_A, allow=VIEW_CHANNEL))
    server = Server(
        roles={ROLE_A: 0, ROLE_B: 0},
        channels=(
            Channel(11, overwrites=(*closed, role(ROLE_B, deny=READ_MESSAGE_HISTORY))),
            Channel(12, overwrites=(*closed, member(NOT_CACHED, deny=READ_MESSAGE_HISTORY))),
            Channel(13, overwrites=(*closed, role(ROLE_B, deny=READ))),  # A's allow wins
            Channel(14, overwrites=(*closed, member(NOT_CACHED, deny=READ))),  # member's last
        ),
    )
    assert not reads(server, 11) and not reads(server, 12) and not reads(server, 13)
    assert reads(server, 14)


def test_a_bots_own_role_is_no_audience() -> None:
    """A bot's managed role (its `tags` name the bot) is that bot's alone; this bot's own
    access to the history is judged apart, and answered with its own line."""
    server = Server(
        roles={ROLE_A: 0},
        channels=(Channel(11, overwrites=(role(ROLE_A, deny=READ_MESSAGE_HISTORY),)),),
    )
    assert not reads(server, 11)
    payload = guild_create(server)
    for entry in payload["roles"]:
        if entry["id"] == str(ROLE_A):
            entry["tags"] = {"bot_id": "99"}
    state = new_state()
    state.parse_guild_create(payload)
    (guild,) = state.guilds
    channel = guild.get_channel(11)
    assert channel is not None and audience_reads_history(channel)
