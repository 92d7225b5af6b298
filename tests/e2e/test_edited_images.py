"""Images that an edit takes away, seen live or missed while the bot was down: the index keeps
what is still there, under the right key, and a search never shows a picture that did not
match."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from bot.chat.client import Glimpse
from bot.chat.sources import embed_key
from tests.e2e.harness import (
    World,
    at_least,
    bot_settings,
    eventually,
    indexed,
    is_indexed,
    running,
    shape_png,
)
from tests.fakediscord import FakeDiscord

GREEN, RED = "https://example.com/g.png", "https://example.com/r.png"


async def test_a_link_edited_out_takes_its_preview_along_and_no_other(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Previews have no ID: keyed by position, the second one took the first's place after
    the edit, and the first one's embedding stayed under it (a search for a green circle
    showed the red square)."""
    server.preview_delay = 0.05
    red = shape_png("red", "square")
    server.host_on_web(GREEN, shape_png("green", "circle"))
    server.host_on_web(RED, red)
    posted = await server.post_message(world.general, world.bob, f"look {GREEN} {RED}")
    await server.previews_settled()
    await indexed(glimpse, 2)
    await server.edit_message(world.general, int(posted["id"]), content=f"look {RED}")
    await server.previews_settled()
    await indexed(glimpse, 1)
    kept = await glimpse.index.of_message(int(posted["id"]))
    assert list(kept) == [(int(posted["id"]), embed_key(RED))]
    assert [digest for digest, _ in kept.values()] == [hashlib.sha256(red).hexdigest()]


async def test_previews_removed_leave_the_index_and_come_back_with_them(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A message's "Remove embeds" (its author or a moderator) hides its previews from
    everyone, without marking it edited: a removed preview's image is no longer on the
    message, so it leaves the index; brought back, it is indexed again."""
    server.preview_delay = 0.05
    server.host_on_web(GREEN, shape_png("green", "circle"))
    posted = await server.post_message(world.general, world.bob, f"look {GREEN}")
    await server.previews_settled()
    await indexed(glimpse, 1)
    message_id = int(posted["id"])
    await server.suppress_embeds(world.general, message_id)
    await indexed(glimpse, 0)
    await server.post_message(world.general, world.alice, "!find a green circle")
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["embeds"] == []
    await server.suppress_embeds(world.general, message_id, suppressed=False)
    await indexed(glimpse, 1)
    assert await is_indexed(glimpse, message_id, embed_key(GREEN))


async def test_an_image_edited_away_while_the_bot_was_down_is_passed_over(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """The edit was missed, so the index still holds the image; the search finds the message
    without it, passes over that hit as over a deleted message, and drops it."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        posted = await server.post_message(world.general, world.bob, "", attachments=[
            ("a.png", shape_png("green", "circle"), "image/png"),
            ("b.png", shape_png("red", "square"), "image/png")])  # fmt: skip
        await indexed(bot, 2)
    a, b = (int(attachment["id"]) for attachment in posted["attachments"])
    await server.edit_message(world.general, int(posted["id"]), keep_attachment_ids=[b])
    async with running(settings) as bot:
        await server.post_message(world.general, world.alice, "!find a green circle")
        reply = await server.wait_for_sent(channel_id=world.general)
        (shown,) = reply["embeds"]
        assert shown["image"]["url"].split("?")[0].endswith("/b.png")
        assert not await is_indexed(bot, int(posted["id"]), a)
        assert await is_indexed(bot, int(posted["id"]), b)


async def test_two_edits_in_quick_succession_leave_what_the_last_one_kept(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first edit's handling waits on the database while the second's runs: it must not
    queue again the image that the second took away."""
    posted = await server.post_message(world.general, world.bob, "", attachments=[
        ("a.png", shape_png("green", "circle"), "image/png"),
        ("b.png", shape_png("red", "square"), "image/png")])  # fmt: skip
    await indexed(glimpse, 2)
    a, b = (int(attachment["id"]) for attachment in posted["attachments"])
    keep_only = glimpse.index.keep_only_attachments
    calls = 0

    async def slow_the_first(message_id: int, attachment_ids: list[int]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.3)
        return await keep_only(message_id, attachment_ids)

    monkeypatch.setattr(glimpse.index, "keep_only_attachments", slow_the_first)
    await server.edit_message(world.general, int(posted["id"]), content="two pictures")
    await server.edit_message(world.general, int(posted["id"]), keep_attachment_ids=[a])
    await eventually(lambda: at_least(calls, 2))
    await asyncio.sleep(0.5)
    await indexed(glimpse, 1)
    assert await is_indexed(glimpse, int(posted["id"]), a)
    assert not await is_indexed(glimpse, int(posted["id"]), b)


async def test_a_message_deleted_while_its_edit_is_handled_stays_deleted(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit brings a link's preview; its handling waits on the database while the message
    is deleted. The preview must not be queued again after the deletion removed the rest."""
    server.preview_delay = 0.05
    server.host_on_web(GREEN, shape_png("green", "circle"))
    posted = await server.post_message(world.general, world.bob, "", attachments=[
        ("a.png", shape_png("red", "square"), "image/png")])  # fmt: skip
    await indexed(glimpse, 1)
    keep_only = glimpse.index.keep_only_attachments
    release = asyncio.Event()
    calls = 0

    async def held(message_id: int, attachment_ids: list[int]) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return await keep_only(message_id, attachment_ids)

    monkeypatch.setattr(glimpse.index, "keep_only_attachments", held)
    await server.edit_message(world.general, int(posted["id"]), content=f"look {GREEN}")
    await server.previews_settled()
    await eventually(lambda: at_least(calls, 1))
    await server.delete_message(world.general, int(posted["id"]))
    await eventually(lambda: _count_is(glimpse, 0))
    release.set()
    await eventually(lambda: at_least(calls, 2))  # the preview's edit, handled after
    await asyncio.sleep(0.5)
    assert await glimpse.index.pending_count() == 0
    assert await glimpse.index.count() == 0
    assert not await is_indexed(glimpse, int(posted["id"]), embed_key(GREEN))


async def _count_is(bot: Glimpse, expected: int) -> bool:
    return await bot.index.count() == expected
