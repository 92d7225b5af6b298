"""Issue 15, item 2: reposts pointed out, opt-in per channel, through the real client."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import sqlite3
import sys
from pathlib import Path

import pytest

from bot import wording
from bot.chat import client as client_module
from bot.chat.client import Glimpse
from tests.e2e.harness import (
    World,
    at_least,
    bot_settings,
    eventually,
    held,
    held_when_called,
    is_indexed,
    mentions_disabled,
    posts_tried,
    replies_to,
    reply_to,
    running,
    shape_png,
)
from tests.e2e.test_real_discord import command, image, settled
from tests.fakediscord import FakeDiscord
from tests.shapes import draw_shape


def link(world: World, channel: int, message: dict) -> str:
    return f"https://discord.com/channels/{world.guild}/{channel}/{message['id']}"


async def repost_reply(server: FakeDiscord, message: dict) -> str:
    reply = await reply_to(server, message)
    assert mentions_disabled(reply)
    return str(reply["content"])


async def post(server: FakeDiscord, channel: int, author: int, *files: tuple) -> dict:
    return await server.post_message(channel, author, "", attachments=list(files))


async def turn_on(server: FakeDiscord, world: World, channel: int) -> None:
    reply = await command(server, channel, world.alice, "!reposts on")
    assert reply["content"] == wording.reposts_on(f"<#{channel}>", 0.95, already=False)


def jpeg(colour: str, shape: str, seed: int = 0) -> tuple[str, bytes, str]:
    """The picture `shape_png` draws, saved again as a JPEG: other bytes, the same picture."""
    buffer = io.BytesIO()
    draw_shape(random.Random(f"{colour}{shape}{seed}"), colour, shape, 160).save(
        buffer, "JPEG", quality=85
    )
    return ("again.jpg", buffer.getvalue(), "image/jpeg")


async def test_moderators_turn_it_on_and_off_per_channel(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    here = f"<#{world.general}>"
    reply = await command(server, world.general, world.bob, "!reposts on")
    assert reply["content"] == wording.permission_needed(["manage_messages"])
    reply = await command(server, world.general, world.bob, "!reposts")
    assert reply["content"] == wording.reposts_state(here, on=False)
    await turn_on(server, world, world.general)
    reply = await command(server, world.general, world.alice, "!reposts ON")
    assert reply["content"] == wording.reposts_on(here, 0.95, already=True)
    reply = await command(server, world.general, world.alice, "!reposts maybe")
    assert reply["content"] == wording.REPOSTS_USAGE
    dm = server.dm_channel(world.alice)
    reply = await command(server, dm, world.alice, "!reposts on")
    assert reply["content"] == wording.SERVERS_ONLY
    assert glimpse.index.checks_reposts(world.general)
    assert not glimpse.index.checks_reposts(world.other)
    reply = await command(server, world.general, world.alice, "!reposts off")
    assert reply["content"] == wording.reposts_off(here, was_on=True)
    assert not glimpse.index.checks_reposts(world.general)


async def test_a_repost_gets_one_reply_linking_its_first_post(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await turn_on(server, world, world.general)
    first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))
    content = await repost_reply(server, again)
    assert content == wording.repost_line(link(world, world.general, first), 1.0, identical=True)
    own = await post(server, world.general, world.bob, image("c.png", "red", "circle"))
    assert link(world, world.general, first) in await repost_reply(server, own)  # the earliest
    similar = await post(server, world.general, world.carol, jpeg("red", "circle"))
    content = await repost_reply(server, similar)
    assert content.startswith(f"Posted here before: {link(world, world.general, first)} (score ")
    assert float(content.rsplit("score ", 1)[1].rstrip(")")) >= 0.95
    two = await post(server, world.general, world.carol, image("n.png", "blue", "square"),
                     image("d.png", "red", "circle"))  # fmt: skip
    content = await repost_reply(server, two)
    assert content.count("Posted here before") == 1  # one line: only the second image was seen
    new = await post(server, world.general, world.bob, image("e.png", "green", "triangle"))
    await settled(server, glimpse, 7)
    await asyncio.sleep(0.5)
    assert replies_to(server, new) == []
    assert all(len(replies_to(server, m)) == 1 for m in (again, own, similar, two))


async def test_discord_failing_on_the_first_post_for_now_is_no_error(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    """The first post is fetched afresh for its link; a 503 there (not retried by discord.py)
    is Discord's trouble for now: no note this time, no error logged, and the next repost
    gets its note."""
    await turn_on(server, world, world.general)
    first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    await settled(server, glimpse, 1)
    server.fail_next("GET", rf"^/channels/{world.general}/messages/{first['id']}$", 503)
    again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))

    async def refused() -> bool:
        return len(server.faults_served) == 1

    await eventually(refused)
    later = await post(server, world.general, world.carol, image("c.png", "red", "circle"))
    assert link(world, world.general, first) in await repost_reply(server, later)
    assert replies_to(server, again) == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_only_this_channel_and_its_public_threads_are_compared(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await turn_on(server, world, world.general)
    private = server.add_thread(world.general, "private", private=True,
                                member_ids=[world.alice, world.bob, server.bot_id])  # fmt: skip
    public = server.add_thread(world.general, "public")
    elsewhere = await post(server, world.other, world.bob, image("x.png", "yellow", "square"))
    in_private = await post(server, private, world.bob, image("p.png", "green", "square"))
    await settled(server, glimpse, 2)
    here = await post(server, world.general, world.carol, image("y.png", "yellow", "square"))
    hidden = await post(server, world.general, world.carol, image("z.png", "green", "square"))
    in_thread = await post(server, public, world.carol, image("t.png", "yellow", "square"))
    content = await repost_reply(server, in_thread)
    assert link(world, world.general, here) in content  # the channel, seen from its thread
    again_private = await post(server, private, world.alice, image("q.png", "yellow", "square"))
    same_private = await post(server, private, world.alice, image("r.png", "green", "square"))
    content = await repost_reply(server, same_private)
    assert link(world, private, in_private) in content  # within the private thread only
    await settled(server, glimpse, 7)
    await asyncio.sleep(0.5)
    for message in (here, hidden, again_private):
        assert replies_to(server, message) == []  # nothing from another channel, nor the reverse
    assert elsewhere["id"] not in str(server.sent)


async def test_forwards_count_and_commands_do_not(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await turn_on(server, world, world.general)
    first = await post(server, world.general, world.carol, image("g.png", "blue", "circle"))
    source = await post(server, world.other, world.bob, image("o.png", "blue", "circle"))
    forward = await server.forward_message(world.general, world.bob, world.other,
                                           int(source["id"]))  # fmt: skip
    assert link(world, world.general, first) in await repost_reply(server, forward)
    found = await command(server, world.general, world.alice, "!find",
                          attachments=[image("q.png", "blue", "circle")])  # fmt: skip
    captioned = await command(server, world.general, world.alice, "!caption",
                              attachments=[image("c.png", "blue", "circle")])  # fmt: skip
    # Every image here is the same file as the example: none is shown as like it.
    assert found["content"] == wording.NO_OTHER_IMAGES
    assert captioned["content"] == "a blue circle"
    await settled(server, glimpse, 5)
    await asyncio.sleep(0.5)
    asked = [{"id": reply["message_reference"]["message_id"]} for reply in (found, captioned)]
    assert [len(replies_to(server, message)) for message in asked] == [1, 1]  # no repost note


async def test_an_image_a_command_asked_about_is_no_earlier_post(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """`!find` with a picture asks whether it was posted; that does not post it. Its first
    real post gets no note, and the next one links to that post, not to the question."""
    await turn_on(server, world, world.general)
    await command(server, world.general, world.alice, "!find",
                  attachments=[image("q.png", "green", "square")])  # fmt: skip
    await settled(server, glimpse, 1)  # the question's picture is indexed, as a search result
    first = await post(server, world.general, world.bob, image("p.png", "green", "square"))
    second = await post(server, world.general, world.carol, image("r.png", "green", "square"))
    assert link(world, world.general, first) in await repost_reply(server, second)
    await settled(server, glimpse, 3)
    await asyncio.sleep(0.5)
    assert replies_to(server, first) == []


async def test_opted_out_members_are_neither_checked_nor_matched(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await turn_on(server, world, world.general)
    await post(server, world.general, world.bob, image("b.png", "yellow", "circle"))
    await settled(server, glimpse, 1)
    await command(server, world.general, world.bob, "!optout")
    unmatched = await post(server, world.general, world.carol, image("c.png", "yellow", "circle"))
    await command(server, world.general, world.carol, "!optout")
    unchecked = await post(server, world.general, world.carol, image("d.png", "yellow", "circle"))
    first = await post(server, world.general, world.alice, image("e.png", "yellow", "circle"))
    second = await post(server, world.general, world.alice, image("f.png", "yellow", "circle"))
    assert link(world, world.general, first) in await repost_reply(server, second)
    assert replies_to(server, unmatched) == replies_to(server, unchecked) == []
    assert replies_to(server, first) == []


async def test_catch_up_is_not_checked_and_the_setting_survives_a_restart(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        await turn_on(server, world, world.general)
        first = await post(server, world.general, world.bob, image("a.png", "red", "square"))
        await settled(server, bot, 1)
    offline = await post(server, world.general, world.carol, image("b.png", "red", "square"))
    async with running(settings) as bot:
        await settled(server, bot, 2)  # caught up and indexed, never checked
        live = await post(server, world.general, world.carol, image("c.png", "red", "square"))
        assert link(world, world.general, first) in await repost_reply(server, live)
        assert replies_to(server, offline) == []


async def test_the_setting_goes_with_its_channel(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    memes = server.add_channel(world.guild, "memes")
    await server.flush()
    await turn_on(server, world, memes)
    await server.delete_channel(memes)
    await eventually(lambda: _not(glimpse.index.checks_reposts(memes)))
    conn = sqlite3.connect(glimpse.settings.data_dir / "index.sqlite3")
    try:
        assert conn.execute("SELECT COUNT(*) FROM reposts").fetchone() == (0,)
    finally:
        conn.close()


async def _not(value: bool) -> bool:
    return not value


async def test_a_link_preview_that_repeats_an_image_is_pointed_out_once(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    server.preview_delay = 0.1
    url = "https://example.com/meme.png"
    server.host_on_web(url, shape_png("green", "circle", seed=8))
    await turn_on(server, world, world.general)
    first = await server.post_message(world.general, world.bob, f"look {url}")
    await server.previews_settled()
    await settled(server, glimpse, 1)
    again = await server.post_message(world.general, world.carol, f"lol {url}")
    assert link(world, world.general, first) in await repost_reply(server, again)
    await server.edit_message(world.general, int(again["id"]), content=f"lol {url} again")
    await server.previews_settled()
    await settled(server, glimpse, 2)
    await asyncio.sleep(0.5)
    assert len(replies_to(server, again)) == 1


async def test_a_sites_picture_previewing_its_other_pages_is_no_repost(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Many sites name one picture (a logo, a banner) for the previews of all their pages: two
    articles of one site are not a repost of each other, while the same page again, or the
    same picture at an address of its own, still is."""
    server.preview_delay = 0.1
    banner = "https://news.example/banner.png"
    server.host_on_web(banner, shape_png("green", "circle", seed=8))
    pages = [f"https://news.example/2026/story-{n}" for n in range(2)]
    tracked = f"{pages[0]}/?utm_source=feed"  # the first page, as a feed links it
    for page in (*pages, tracked, "https://www.news.example/2026/story-2"):
        server.host_page(page, banner)
    meme = "https://memes.example/a.png"
    server.host_on_web(meme, shape_png("red", "square", seed=3))
    server.host_page("https://news.example/2026/meme", meme)
    server.host_page("https://other.example/stolen", meme)
    await turn_on(server, world, world.general)
    first = await server.post_message(world.general, world.bob, f"read {pages[0]}")
    await settled(server, glimpse, 1)
    second = await server.post_message(world.general, world.carol, f"and {pages[1]}")
    await settled(server, glimpse, 2)
    again = await server.post_message(world.general, world.carol, f"old news {pages[0]}")
    assert link(world, world.general, first) in await repost_reply(server, again)
    fed = await server.post_message(world.general, world.carol, f"via the feed {tracked}")
    assert link(world, world.general, first) in await repost_reply(server, fed)
    www = await server.post_message(
        world.general, world.bob, "https://www.news.example/2026/story-2"
    )
    own = await post(
        server,
        world.general,
        world.bob,
        ("logo.png", shape_png("green", "circle", seed=8), "image/png"),
    )
    assert link(world, world.general, first) in await repost_reply(server, own)
    meme_page = await server.post_message(
        world.general, world.bob, "https://news.example/2026/meme"
    )
    await settled(server, glimpse, 7)
    elsewhere = await server.post_message(
        world.general, world.carol, "https://other.example/stolen"
    )
    assert link(world, world.general, meme_page) in await repost_reply(server, elsewhere)
    await settled(server, glimpse, 8)
    await asyncio.sleep(0.5)
    assert replies_to(server, second) == replies_to(server, meme_page) == []
    assert replies_to(server, www) == []


async def test_repost_min_score_sets_how_alike_is_a_repost(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    # Two drawings of a red circle have a cosine of 0.87 on the test model; other shapes <= 0.7.
    async with running(bot_settings(server, tmp_path / "data", REPOST_MIN_SCORE="0.8")) as bot:
        reply = await command(server, world.general, world.alice, "!reposts on")
        assert reply["content"] == wording.reposts_on(f"<#{world.general}>", 0.8, already=False)
        first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
        other = await post(server, world.general, world.bob, image("b.png", "red", "square"))
        alike = await post(server, world.general, world.carol, image("c.png", "red", "circle", 5))
        content = await repost_reply(server, alike)
        assert content.startswith(
            f"Posted here before: {link(world, world.general, first)} (score 0."
        )
        await settled(server, bot, 3)
        assert replies_to(server, other) == []


async def test_a_post_repeating_a_picture_many_times_gets_a_reply_that_fits(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A webhook's post of ten attachments and ten embeds of one picture posted before: a line
    for each would pass Discord's 2000 characters, and the reply would be refused."""
    await turn_on(server, world, world.general)
    first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    _, picture, _ = image("a.png", "red", "circle")
    links = [f"https://example.com/red-{n}.png" for n in range(10)]
    for url in links:
        server.host_on_web(url, picture)
    hook = server.add_user("captain-hook", bot=True)
    many = await server.post_message(
        world.general, hook, "", webhook=True,
        attachments=[image(f"{n}.png", "red", "circle") for n in range(10)],
        embeds=[{"type": "rich", "image": {"url": url}} for url in links],
    )  # fmt: skip
    content = await repost_reply(server, many)
    lines = content.split("\n")
    assert len(content) <= 2000 and 10 <= len(lines) < 20
    shown = lines[:-1]
    assert all(link(world, world.general, first) in line for line in shown)
    assert lines[-1] == wording.reposts_not_shown(20 - len(shown))


async def test_turned_off_it_posts_no_reply_still_on_its_way(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check waits for the repost to be indexed; `reposts off` meanwhile ends it."""
    await turn_on(server, world, world.general)
    first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    await settled(server, glimpse, 1)
    release = held(monkeypatch, glimpse.vision, "embed_images")
    again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))
    reply = await command(server, world.general, world.alice, "!reposts off")
    assert reply["content"] == wording.reposts_off(f"<#{world.general}>", was_on=True)
    release.set()
    await settled(server, glimpse, 2)
    await asyncio.sleep(0.5)
    assert replies_to(server, again) == [] and replies_to(server, first) == []


async def test_a_repost_deleted_while_its_reply_waits_its_turn_gets_none(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    await turn_on(server, world, world.general)
    await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    await settled(server, glimpse, 1)
    waiting, release = held_when_called(monkeypatch, glimpse.reposts.pace, "wait")
    again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))
    await asyncio.wait_for(waiting.wait(), 10)
    await server.delete_message(world.general, int(again["id"]))
    key = int(again["id"]), int(again["attachments"][0]["id"])

    async def removed() -> bool:  # the bot has heard of the deletion
        return not await is_indexed(glimpse, *key)

    await eventually(removed)
    tried = posts_tried(server, world.general)
    release.set()
    await asyncio.sleep(0.5)
    assert posts_tried(server, world.general) == tried  # not even tried: Discord would refuse it


async def test_deleting_a_repost_takes_its_note_down(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    """The note points out a post no one can see any more; one deleted in the same bulk
    deletion as its post is not asked for again."""
    await turn_on(server, world, world.general)
    first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))
    note = await reply_to(server, again)
    other = await post(server, world.general, world.carol, image("c.png", "red", "circle"))
    other_note = await reply_to(server, other)
    await server.delete_message(world.general, int(again["id"]))

    async def taken_down() -> bool:
        return int(note["id"]) not in server.messages[world.general]

    await eventually(taken_down)
    third = await post(server, world.general, world.carol, image("d.png", "red", "circle"))
    third_note = await reply_to(server, third)
    deletes = len([1 for method, _ in server.requests if method == "DELETE"])
    await server.bulk_delete(world.general, [int(other["id"]), int(other_note["id"])])
    await server.bulk_delete(world.general, [int(third["id"])])  # the note left behind

    async def third_taken_down() -> bool:
        return int(third_note["id"]) not in server.messages[world.general]

    await eventually(third_taken_down)
    await settled(server, glimpse, 1)
    await asyncio.sleep(0.3)
    left = set(server.messages[world.general])
    assert int(first["id"]) in left
    assert not left & {int(m["id"]) for m in (again, note, other, other_note, third, third_note)}
    # Only the third's note was asked for: the other went in the same deletion as its post.
    assert len([1 for method, _ in server.requests if method == "DELETE"]) == deletes + 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_an_earlier_post_whose_image_was_edited_away_is_not_pointed_to(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """The edit was made while the bot was down, so the index still held the image: the
    earlier post no longer shows it, so it is no earlier post of it, and leaves the index."""
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        await turn_on(server, world, world.general)
        first = await post(server, world.general, world.bob, image("a.png", "red", "circle"),
                           image("n.png", "blue", "square"))  # fmt: skip
        await settled(server, bot, 2)
    a, n = (int(attachment["id"]) for attachment in first["attachments"])
    await server.edit_message(world.general, int(first["id"]), keep_attachment_ids=[n])
    async with running(settings) as bot:
        again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))

        async def dropped() -> bool:
            return not await is_indexed(bot, int(first["id"]), a)

        await eventually(dropped)
        await asyncio.sleep(0.5)
        assert replies_to(server, again) == []


async def test_reposts_and_descriptions_share_one_pace_in_a_channel(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both kinds of unasked posts together take at most 2 of every period in a channel, so
    that a flood of reposts leaves Discord's budget there to the answers to commands."""
    monkeypatch.setattr(client_module, "PERIOD_S", 2.0)
    server.ratelimits.enabled = False  # so that the pace alone spaces the posts
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await turn_on(server, world, world.general)
        reply = await command(server, world.general, world.alice, "!alttext on")
        assert reply["content"] == wording.alt_text_on(f"<#{world.general}>", already=False)
        first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
        await reply_to(server, first)  # its description
        await settled(server, bot, 1)
        start, seen = len(server.sent), {}
        loop = asyncio.get_running_loop()

        async def watch() -> None:
            while True:
                for sent in server.sent[start:]:
                    seen.setdefault(sent["id"], loop.time())
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        for n in range(3):
            await post(server, world.general, world.carol, image(f"{n}.png", "red", "circle"))
        await eventually(lambda: at_least(len(seen), 6), timeout=30)
        await asyncio.sleep(0.5)
        watcher.cancel()
        assert len(seen) == 6  # three descriptions, three repost replies
        times = sorted(seen.values())
        # Each post seen here a little after its turn: a margin for the machine's delays.
        assert all(times[i + 2] - times[i] >= 1.5 for i in range(len(times) - 2)), times


async def test_a_repost_behind_a_long_backlog_is_still_pointed_out(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue is taken oldest first: behind a catch-up's or `!index`'s backlog, a live post's
    images came after INDEXED_WAIT_S and its check was given up. They are indexed first."""
    await turn_on(server, world, world.general)
    first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    await settled(server, glimpse, 1)
    monkeypatch.setattr(sys.modules["bot.chat.reposts"], "INDEXED_WAIT_S", 5.0)
    # The indexer busy with a batch of the backlog, for longer than a check waits.
    called, release = held_when_called(monkeypatch, glimpse.indexer, "_process")
    await post(server, world.other, world.bob, image("old.png", "blue", "square"))
    await asyncio.wait_for(called.wait(), 10)
    again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))
    try:
        content = await repost_reply(server, again)
    finally:
        release.set()
    assert link(world, world.general, first) in content


async def test_a_repost_of_a_post_still_queued_waits_for_it(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own images are indexed first; the earlier post it repeats, still in the queue, is
    waited for rather than missed."""
    await turn_on(server, world, world.general)
    called, release = held_when_called(monkeypatch, glimpse.indexer, "_process")
    first = await post(server, world.general, world.bob, image("a.png", "red", "circle"))
    await asyncio.wait_for(called.wait(), 10)  # taken from the queue, not indexed yet
    again = await post(server, world.general, world.carol, image("b.png", "red", "circle"))
    await asyncio.sleep(1.0)
    assert replies_to(server, again) == []
    release.set()
    assert link(world, world.general, first) in await repost_reply(server, again)
