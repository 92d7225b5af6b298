"""Issue 17: taking an automatic description down, through the real client. A 🗑️ from the
poster of the original or from a member with Manage Messages there deletes it (after a restart
too); anyone else's, any other emoji, or a 🗑️ on another message does nothing; the bot never
reacts itself. Deleting the original (alone or in a bulk delete) deletes the description, and a
description whose original goes before it is posted is never posted."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.chat.client import Glimpse
from tests.e2e.harness import World, bot_settings, eventually, held, replies_to, running
from tests.e2e.test_alt_text_replies import described_by, turn_on
from tests.e2e.test_real_discord import command, image
from tests.fakediscord import ADD_REACTIONS, FakeDiscord

BIN, PLAIN_BIN = "\U0001f5d1\ufe0f", "\U0001f5d1"


def members_may_react(server: FakeDiscord, world: World) -> None:
    """Members may add reactions (a role of theirs); the bot keeps exactly the invite's."""
    reactors = server.add_role(world.guild, "reactors", ADD_REACTIONS)
    for member, roles in ((world.alice, [world.mods]), (world.bob, []), (world.carol, [])):
        server.set_member_roles(world.guild, member, [*roles, reactors])


async def post_described(
    server: FakeDiscord, channel: int, poster: int, name: str
) -> tuple[dict, dict]:
    original = await server.post_message(channel, poster, "", attachments=[
        image(name, "red", "circle")])  # fmt: skip
    return original, await described_by(server, original)


def exists(server: FakeDiscord, message: dict) -> bool:
    return int(message["id"]) in server.messages.get(int(message["channel_id"]), {})


async def gone(server: FakeDiscord, message: dict) -> None:
    async def check() -> bool:
        return not exists(server, message)

    await eventually(check)


def rows(bot: Glimpse) -> int:
    conn = sqlite3.connect(bot.settings.data_dir / "index.sqlite3")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM descriptions").fetchone()[0])
    finally:
        conn.close()


async def test_the_poster_or_a_moderator_deletes_it_with_a_wastebasket(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    members_may_react(server, world)
    await turn_on(server, world, world.general)
    mine, first = await post_described(server, world.general, world.bob, "a.png")
    _, second = await post_described(server, world.general, world.bob, "b.png")
    asked = await command(server, world.general, world.carol, "!caption",
                          attachments=[image("c.png", "blue", "square")])  # fmt: skip
    for channel, message, who, emoji in (
        (world.general, first, world.carol, BIN),  # neither the poster nor a moderator
        (world.general, first, world.bob, "\U0001f44d"),  # another emoji
        (world.general, mine, world.bob, BIN),  # the original, not the description
        (world.general, asked, world.bob, BIN),  # another reply of the bot's
    ):
        await server.react(channel, int(message["id"]), who, emoji)
    await asyncio.sleep(0.5)
    assert all(exists(server, m) for m in (mine, first, second, asked))
    await server.react(world.general, int(first["id"]), world.bob, BIN)  # its poster
    await gone(server, first)
    await server.react(world.general, int(second["id"]), world.alice, PLAIN_BIN)  # a moderator
    await gone(server, second)
    assert exists(server, mine) and exists(server, asked)
    assert server.reactions == []  # the bot never reacts itself
    await eventually(lambda: _equals(rows(glimpse), 0))


async def test_a_description_discord_would_not_delete_can_be_taken_down_later(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A delete refused (403 in a locked thread, a 5xx past discord.py's retries) leaves the
    description up; its record stays, so that the next 🗑️ can take it down."""
    members_may_react(server, world)
    await turn_on(server, world, world.general)
    _, first = await post_described(server, world.general, world.bob, "a.png")
    original, second = await post_described(server, world.general, world.bob, "b.png")
    for message in (first, second):
        server.fail_next("DELETE", rf"^/channels/\d+/messages/{message['id']}$", 403)
    await server.react(world.general, int(first["id"]), world.bob, BIN)
    await server.delete_message(world.general, int(original["id"]))

    async def both_refused() -> bool:
        return len(server.faults_served) == 2

    await eventually(both_refused)
    await asyncio.sleep(0.2)
    assert exists(server, first) and exists(server, second) and rows(glimpse) == 2
    # (bob's 🗑️ stays on the first: a moderator's takes it down)
    for message, who in ((first, world.alice), (second, world.bob)):
        await server.react(world.general, int(message["id"]), who, BIN)
        await gone(server, message)
    assert rows(glimpse) == 0


async def _equals(value: int, expected: int) -> bool:
    return value == expected


async def test_a_record_goes_only_once_its_description_is_gone(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Deleting the original takes its description down, then forgets it. While Discord makes
    the bot wait (a 429), the record stays: a bot stopped then still knows the description,
    and a 🗑️ can take it down after the restart."""
    await turn_on(server, world, world.general)
    original, description = await post_described(server, world.general, world.bob, "a.png")
    path = rf"^/channels/\d+/messages/{description['id']}$"
    server.fail_next("DELETE", path, 429, retry_after=1.0)
    await server.delete_message(world.general, int(original["id"]))

    async def told_to_wait() -> bool:
        return len(server.faults_served) == 1

    await eventually(told_to_wait)
    assert exists(server, description) and rows(glimpse) == 1
    await gone(server, description)
    await eventually(lambda: _equals(rows(glimpse), 0))


async def test_moderators_of_a_thread_and_posters_after_a_restart(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    members_may_react(server, world)
    thread = server.add_thread(world.general, "pics")
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings):
        await turn_on(server, world, world.general)
        _, in_thread = await post_described(server, thread, world.carol, "t.png")
        _, later = await post_described(server, world.general, world.carol, "l.png")
        await server.react(thread, int(in_thread["id"]), world.bob, BIN)  # no moderator
        await asyncio.sleep(0.3)
        assert exists(server, in_thread)
        await server.react(thread, int(in_thread["id"]), world.alice, BIN)  # Manage Messages
        await gone(server, in_thread)
    async with running(settings):  # the description is in no cache now
        await server.react(world.general, int(later["id"]), world.carol, BIN)
        await gone(server, later)


async def test_deleting_the_original_deletes_the_description(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    await turn_on(server, world, world.general)
    one, first = await post_described(server, world.general, world.bob, "a.png")
    two, second = await post_described(server, world.general, world.carol, "b.png")
    three, third = await post_described(server, world.general, world.bob, "c.png")
    await eventually(lambda: _equals(rows(glimpse), 3))  # recorded once posted
    await server.delete_message(world.general, int(one["id"]))
    await gone(server, first)
    await server.bulk_delete(world.general, [int(two["id"]), int(three["id"])])
    await gone(server, second)
    await gone(server, third)
    await eventually(lambda: _equals(rows(glimpse), 0))
    release = held(monkeypatch, glimpse.vision, "caption")
    late = await server.post_message(world.general, world.bob, "", attachments=[
        image("d.png", "green", "square")])  # fmt: skip
    await eventually(lambda: _equals(glimpse.descriptions.waiting, 1))
    await server.delete_message(world.general, int(late["id"]))
    await eventually(lambda: _equals(glimpse.descriptions.waiting, 0))
    release.set()
    await asyncio.sleep(0.5)
    assert replies_to(server, late) == []


async def post_two(server: FakeDiscord, world: World) -> tuple[dict, dict, int]:
    """A message with two images without alt text, its description, and the second's ID."""
    two = await server.post_message(world.general, world.bob, "two", attachments=[
        image("a.png", "red", "circle"), image("b.png", "blue", "square")])  # fmt: skip
    return two, await described_by(server, two), int(two["attachments"][1]["id"])


async def edit_words_then_images(server: FakeDiscord, two: dict, first: dict, b: int) -> None:
    """Words alone change nothing; the first image edited away takes the description down, and
    the second is described anew."""
    channel = int(two["channel_id"])
    await server.edit_message(channel, int(two["id"]), content="two, edited")
    await asyncio.sleep(0.5)
    assert exists(server, first) and len(replies_to(server, two)) == 1
    await server.edit_message(channel, int(two["id"]), keep_attachment_ids=[b])
    await gone(server, first)
    await eventually(lambda: _replies(server, two, 2))
    assert replies_to(server, two)[-1]["content"] == "Automatic alt text: a blue square"


async def cover_the_second(server: FakeDiscord, two: dict, b: int) -> None:
    """A spoiler cover added: the description showing it goes, and a covered one comes."""
    shown = replies_to(server, two)[-1]
    await server.edit_message(int(two["channel_id"]), int(two["id"]), attachment_changes={
        b: {"description": None, "is_spoiler": True}})  # fmt: skip
    await gone(server, shown)
    await eventually(lambda: _replies(server, two, 3))
    assert replies_to(server, two)[-1]["content"] == "Automatic alt text: ||a blue square||"


async def test_an_edit_that_changes_the_images_takes_the_description_down(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """An image edited away leaves a description of a picture no longer there, and a spoiler
    cover added leaves one showing what is now covered: the description goes, and what is
    still without alt text is described anew. An edit of the words alone changes nothing."""
    await turn_on(server, world, world.general)
    two, first, b = await post_two(server, world)
    await edit_words_then_images(server, two, first, b)
    await cover_the_second(server, two, b)
    await server.edit_message(world.general, int(two["id"]), attachment_changes={
        b: {"description": "my own words", "is_spoiler": True}})  # fmt: skip
    await gone(server, replies_to(server, two)[-1])
    assert rows(glimpse) == 0


async def test_an_edit_after_a_restart_is_compared_with_what_was_described(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """After a restart the message is in no cache, so there is no "before" to compare the edit
    with; what the description was posted for is kept with it, and compared instead."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings):
        await turn_on(server, world, world.general)
        two, first, b = await post_two(server, world)
    async with running(settings) as bot:
        await edit_words_then_images(server, two, first, b)
        await eventually(lambda: _is(rows(bot), 1))  # recorded once posted
    async with running(settings):
        await cover_the_second(server, two, b)


async def test_a_description_posted_as_the_bot_stops_is_recorded(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Posted, then the bot stops before it is recorded: cancelled there, it stayed in the
    channel with no record, and no deletion or edit could take it down after the restart."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        await turn_on(server, world, world.general)
        release = held(monkeypatch, bot.index, "add_description")
        original = await server.post_message(world.general, world.bob, "", attachments=[
            image("a.png", "red", "circle")])  # fmt: skip
        await eventually(lambda: _is(len(replies_to(server, original)), 1))
        asyncio.get_running_loop().call_later(0.3, release.set)  # while the bot closes
    async with running(settings) as bot:
        assert rows(bot) == 1
        (description,) = replies_to(server, original)
        await server.delete_message(world.general, int(original["id"]))
        await gone(server, description)


async def test_an_edit_after_a_restart_stops_a_description_on_its_way(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The description made anew after the first edit is not recorded yet when a second edit
    takes its image away too: it is compared with that one as well, and never posted."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings):
        await turn_on(server, world, world.general)
        two, first, b = await post_two(server, world)
    async with running(settings) as bot:
        release = held(monkeypatch, bot.vision, "caption")
        await server.edit_message(world.general, int(two["id"]), keep_attachment_ids=[b])
        await gone(server, first)
        await eventually(lambda: _is(bot.descriptions.waiting, 1))
        await server.edit_message(world.general, int(two["id"]), keep_attachment_ids=[])
        await eventually(lambda: _is(bot.descriptions.waiting, 0))
        release.set()
        await asyncio.sleep(0.5)
        assert len(replies_to(server, two)) == 1 and rows(bot) == 0


async def _is(value: int, expected: int) -> bool:
    return value == expected


async def _replies(server: FakeDiscord, message: dict, count: int) -> bool:
    return len(replies_to(server, message)) == count
