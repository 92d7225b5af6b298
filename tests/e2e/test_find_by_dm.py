"""Answers that go by direct message: a public `!find ... scope: server` (the other channels'
results), and a private answer ready after the interaction's token expired (issue 12)."""

from __future__ import annotations

import asyncio

import pytest

from bot import wording
from bot.chat.client import Glimpse
from bot.errors import UserError
from tests.e2e.harness import (
    World,
    held,
    indexed,
    mentions_disabled,
    posts_tried,
    reply_to,
    shape_png,
    sync_commands,
)
from tests.fakediscord import FakeDiscord


async def post(server: FakeDiscord, channel: int, author: int, colour: str, shape: str) -> dict:
    png = shape_png(colour, shape, seed=channel)
    return await server.post_message(channel, author, "", attachments=[("i.png", png, "image/png")])


async def ask(server: FakeDiscord, channel: int, author: int, text: str) -> dict:
    """The bot's reply to a command, found by its reference."""
    return await reply_to(server, await server.post_message(channel, author, text))


def link(world: World, channel: int, message: dict) -> str:
    return f"https://discord.com/channels/{world.guild}/{channel}/{message['id']}"


def public_view(reply: dict) -> tuple[str, list[tuple[str, str, str]]]:
    """What members of the channel read (image URLs are signed afresh for each reply)."""
    embeds = [(e["url"], e["title"], e.get("description", "")) for e in reply["visible_embeds"]]
    return reply["content"], embeds


async def test_the_full_list_goes_to_the_asker_by_direct_message(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    here = await post(server, world.general, world.bob, "blue", "circle")
    hidden = await post(server, world.hidden, world.alice, "blue", "circle")
    await indexed(glimpse, 2)
    reply = await ask(
        server, world.general, world.alice, "!find a blue circle top: 2 scope: server"
    )
    assert [e["url"] for e in reply["embeds"]] == [link(world, world.general, here)]
    assert reply["content"] == wording.SENT_BY_DM and mentions_disabled(reply)

    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.alice))
    urls = {e["url"] for e in dm["embeds"]}
    assert urls == {link(world, world.general, here), link(world, world.hidden, hidden)}
    assert all(e.get("image") and e.get("author") for e in dm["embeds"])  # images and posters


async def test_a_member_who_takes_no_direct_messages_hears_where_to_look(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    server.closed_dms.add(world.alice)  # Discord answers 403, code 50007
    await post(server, world.hidden, world.alice, "red", "square")
    await indexed(glimpse, 1)
    reply = await ask(server, world.general, world.alice, "!find a red square scope: server")
    assert reply["content"] == f"{wording.EMPTY_INDEX}\n{wording.NOT_SENT_BY_DM}"
    assert not reply["embeds"]
    assert posts_tried(server, server.dm_channel(world.alice)) == 1  # refused once, not again


async def test_the_public_reply_says_nothing_of_what_other_channels_hold(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await post(server, world.general, world.bob, "green", "triangle")
    await indexed(glimpse, 1)
    query = "!find a yellow circle top: 3 scope: server"
    before = await ask(server, world.general, world.alice, query)
    await post(server, world.hidden, world.alice, "yellow", "circle")  # a far better match
    await indexed(glimpse, 2)
    after = await ask(server, world.general, world.alice, query)
    assert public_view(after) == public_view(before)
    assert after["content"] == wording.SENT_BY_DM
    dms = [e for e in server.sent if int(e["channel_id"]) == server.dm_channel(world.alice)]
    assert [len(e["embeds"]) for e in dms] == [1, 2]


async def test_in_a_dm_server_scope_is_the_dm_itself(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    dm = server.dm_channel(world.carol)
    await post(server, dm, world.carol, "red", "circle")
    await indexed(glimpse, 1)
    reply = await ask(server, dm, world.carol, "!find a red circle scope: server")
    assert len(reply["embeds"]) == 1 and not reply["content"]
    assert len([e for e in server.sent if int(e["channel_id"]) == dm]) == 1  # no second copy


@pytest.mark.parametrize("dms_open", [True, False], ids=["dm", "dm-refused"])
async def test_a_private_answer_after_the_token_expired_goes_by_direct_message(
    server: FakeDiscord,
    world: World,
    glimpse: Glimpse,
    monkeypatch: pytest.MonkeyPatch,
    dms_open: bool,
) -> None:
    hidden = await post(server, world.hidden, world.alice, "blue", "square")
    await indexed(glimpse, 1)
    if not dms_open:
        server.closed_dms.add(world.alice)
    release = held(monkeypatch, glimpse.finder, "find")
    await sync_commands(server)
    options = {"query": "a blue square", "scope": "server"}
    it = await server.slash_command(world.general, world.alice, "find", options)
    assert (await it.wait_for_callback())["data"]["flags"] & 64  # deferred privately
    await server.advance(16 * 60)  # the token lives 15 minutes
    release.set()
    note = await server.wait_for_sent(channel_id=world.general, timeout=30)
    assert note["content"] == (wording.LATE_BY_DM if dms_open else wording.LATE_NOT_BY_DM)
    assert not note["embeds"] and mentions_disabled(note)
    dms = [e for e in server.sent if int(e["channel_id"]) == server.dm_channel(world.alice)]
    if dms_open:
        (dm,) = dms
        assert dm["embeds"][0]["url"].endswith(f"/{world.hidden}/{hidden['id']}")
    else:
        assert posts_tried(server, server.dm_channel(world.alice)) == 1  # refused once


async def test_a_late_answer_from_an_age_restricted_channel_sends_no_pictures_by_dm(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searched from an age-restricted channel, the answer holds age-restricted images, which
    a DM may carry only once its reader has allowed it, and a bot cannot see that
    (application-commands.mdx, "Using Age-Restricted Commands"): late, the DM says to ask
    again instead of showing them."""
    after_dark = server.add_channel(world.guild, "after-dark", nsfw=True)
    await post(server, after_dark, world.bob, "red", "circle")
    await indexed(glimpse, 1)
    release = held(monkeypatch, glimpse.finder, "find")
    await sync_commands(server)
    options = {"query": "a red circle", "scope": "server"}
    it = await server.slash_command(after_dark, world.alice, "find", options)
    await it.wait_for_callback()
    await server.advance(16 * 60)
    release.set()
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.alice), timeout=30)
    assert dm["content"] == wording.LATE_AGE_RESTRICTED and not dm["embeds"]
    note = await server.wait_for_sent(channel_id=after_dark)
    assert note["content"] == wording.LATE_NOT_BY_DM  # the answer itself did not go


async def test_an_error_after_the_token_expired_goes_by_direct_message(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()

    async def failing(*args: object, **kwargs: object) -> object:
        await release.wait()
        raise UserError("the index is being rebuilt")

    monkeypatch.setattr(glimpse.finder, "find", failing)
    await sync_commands(server)
    it = await server.slash_command(world.general, world.bob, "find", {"query": "a red circle"})
    await it.wait_for_callback()
    await server.advance(16 * 60)
    release.set()
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.bob), timeout=30)
    assert dm["content"] == "the index is being rebuilt"  # an error is the asker's alone
    note = await server.wait_for_sent(channel_id=world.general)
    assert note["content"] == wording.LATE_BY_DM
