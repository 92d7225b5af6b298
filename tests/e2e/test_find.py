"""`!find`, `/find`, `!forget` and the index's life cycle, end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot import wording
from bot.chat import search as search_module
from bot.chat.client import Glimpse
from tests.e2e.harness import (
    World,
    bot_settings,
    indexed,
    mentions_disabled,
    running,
    shape_png,
    sync_commands,
)
from tests.fakediscord import EMBED_LINKS, FakeDiscord
from tests.shapes import CLASSES


async def post_shapes(server: FakeDiscord, channel: int, authors: list[int]) -> dict[str, dict]:
    """Members post the 12 shapes (no command); returns the message of each caption."""
    posted = {}
    for i, (colour, shape) in enumerate(CLASSES):
        message = await server.post_message(
            channel,
            authors[i % len(authors)],
            "",
            attachments=[(f"{colour}-{shape}.png", shape_png(colour, shape), "image/png")],
        )
        posted[f"a {colour} {shape}"] = message
    return posted


def jump(world: World, channel: int, message: dict) -> str:
    return f"/channels/{world.guild}/{channel}/{message['id']}"


async def ask(
    server: FakeDiscord,
    world: World,
    text: str,
    *,
    channel: int | None = None,
    author: int | None = None,
) -> dict:
    channel = channel or world.general
    await server.post_message(channel, author or world.alice, text)
    return await server.wait_for_sent(channel_id=channel)


async def test_find_the_right_image_and_top_n(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    posted = await post_shapes(server, world.general, [world.bob, world.carol])
    await indexed(glimpse, 12)
    for caption in ("a green triangle", "a yellow circle", "a blue square"):
        reply = await ask(server, world, f"!find {caption}")
        (embed,) = reply["embeds"]
        assert embed["url"].endswith(jump(world, world.general, posted[caption]))
        assert embed["image"]["url"].split("?")[0].endswith(f"/{caption[2:].replace(' ', '-')}.png")
        # Unsigned, so that Discord keeps it fresh (reference.mdx, "Signed Attachment CDN URLs")
        assert "?" not in embed["image"]["url"]
        assert "score" in embed["title"] and mentions_disabled(reply)
    reply = await ask(server, world, '!find "a red square" top: 3')
    assert len(reply["embeds"]) == 3
    assert reply["embeds"][0]["url"].endswith(jump(world, world.general, posted["a red square"]))


async def test_a_result_discord_fails_to_give_for_now_is_passed_over(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A 503 (which discord.py does not retry) on one result's message: the others are shown.
    Only when Discord fails on every one is the answer that Discord is in trouble."""
    posted = await post_shapes(server, world.general, [world.bob, world.carol])
    await indexed(glimpse, 12)
    best = posted["a green triangle"]
    server.fail_next("GET", rf"^/channels/{world.general}/messages/{best['id']}$", 503)
    reply = await ask(server, world, '!find "a green triangle" top: 3')
    assert len(reply["embeds"]) == 3
    assert all(not e["url"].endswith(jump(world, world.general, best)) for e in reply["embeds"])
    server.fail_next("GET", r"^/channels/\d+/messages/\d+$", 503, count=100)
    assert (await ask(server, world, "!find a green triangle"))["content"] == (
        wording.DISCORD_TROUBLE
    )


async def test_without_embed_links_the_results_come_as_links(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A channel that denies the bot Embed Links: Discord would refuse a reply of embeds alone,
    so the results come as lines of links, with what a moderator can do about it."""
    no_embeds = {"id": server.bot_role_id(world.guild), "type": 0, "allow": 0, "deny": EMBED_LINKS}
    plain = server.add_channel(world.guild, "plain", overwrites=[no_embeds])
    posted = await post_shapes(server, plain, [world.bob])
    await indexed(glimpse, 12)
    reply = await ask(server, world, "!find a green triangle top: 2", channel=plain)
    assert reply["embeds"] == [] and mentions_disabled(reply)
    first, second, note = reply["content"].splitlines()
    assert first.startswith("#1 · score ")
    assert first.endswith(jump(world, plain, posted["a green triangle"]) + ">")
    assert second.startswith("#2 · score ") and note == wording.NO_EMBED_LINKS


async def test_deleted_edited_and_forgotten_images_are_not_found(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    posted = await post_shapes(server, world.general, [world.bob, world.carol])
    await indexed(glimpse, 12)
    green = posted["a green triangle"]
    await server.delete_message(world.general, int(green["id"]))
    blue = posted["a blue circle"]
    await server.edit_message(
        world.general, int(blue["id"]), content="no picture now", keep_attachment_ids=[]
    )
    for caption, gone in (("a green triangle", green), ("a blue circle", blue)):
        reply = await ask(server, world, f"!find {caption} top: 10")
        assert all(not e["url"].endswith(jump(world, world.general, gone)) for e in reply["embeds"])
        assert len(reply["embeds"]) == 10

    reply = await ask(server, world, "!forget", author=world.bob)
    bobs = sum(1 for i in range(12) if i % 2 == 0) - 1  # the deleted green triangle was bob's
    assert reply["content"] == f"Removed {bobs} of your images from this server's index."
    reply = await ask(server, world, "!find a red circle top: 10")
    assert all(str(world.bob) not in e.get("description", "") for e in reply["embeds"])
    assert len(reply["embeds"]) == 12 - 2 - bobs

    reply = await ask(server, world, f"!forget <@{world.carol}>", author=world.bob)
    assert "Manage Messages" in reply["content"]


async def test_empty_index_explains_itself(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    reply = await ask(server, world, "!find a photo of parrots", channel=world.other)
    assert "no images indexed" in reply["content"] and not reply.get("embeds")


async def test_restart_keeps_the_index_and_catches_up(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        posted = await post_shapes(server, world.general, [world.bob])
        await indexed(bot, 12)
    late = await server.post_message(
        world.general,
        world.carol,
        "posted while the bot was down",
        attachments=[("late.png", shape_png("red", "square", seed=9), "image/png")],
    )
    async with running(settings) as bot:
        await indexed(bot, 13)
        reply = await ask(server, world, "!find a red square top: 2")
        urls = [e["url"] for e in reply["embeds"]]
        assert any(u.endswith(jump(world, world.general, late)) for u in urls)
        assert any(u.endswith(jump(world, world.general, posted["a red square"])) for u in urls)


async def test_server_scope_respects_what_the_asker_can_see(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    secret = await server.post_message(
        world.hidden,
        world.alice,
        "",
        attachments=[("s.png", shape_png("yellow", "triangle"), "image/png")],
    )
    thread = server.add_thread(
        world.general, "private", private=True, member_ids=[world.alice, server.bot_id]
    )
    await server.post_message(
        thread,
        world.alice,
        "",
        attachments=[("p.png", shape_png("yellow", "triangle", seed=2), "image/png")],
    )
    public = await server.post_message(
        world.other,
        world.carol,
        "",
        attachments=[("o.png", shape_png("yellow", "triangle", seed=3), "image/png")],
    )
    await indexed(glimpse, 3)

    reply = await ask(
        server, world, "!find a yellow triangle top: 5 scope: server", author=world.bob
    )
    # In public, this channel's results only (none here); the rest by direct message.
    assert not reply["embeds"] and reply["content"].endswith(wording.SENT_BY_DM)
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.bob))
    urls = [e["url"] for e in dm["embeds"]]
    assert urls and urls[0].endswith(jump(world, world.other, public))
    assert len(urls) == 1  # neither the mods-only channel nor the private thread
    assert all("image" in e for e in dm["embeds"])

    await ask(server, world, "!find a yellow triangle top: 5 SCOPE: server", author=world.alice)
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.alice))
    urls = [e["url"] for e in dm["embeds"]]
    assert any(u.endswith(jump(world, world.hidden, secret)) for u in urls)
    assert len(urls) == 2  # the private thread is searched only from inside it

    await sync_commands(server)
    interaction = await server.slash_command(
        world.general, world.alice, "find", {"query": "a yellow triangle", "scope": "server"}
    )
    response = await interaction.wait_for_response()
    assert response["ephemeral"] is True
    assert response["embeds"][0].get("image")  # private answer: images may be shown


async def test_quoted_query_keeps_flag_words(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await post_shapes(server, world.general, [world.bob])
    await indexed(glimpse, 12)
    reply = await ask(server, world, "!find “a stop: sign top: 3”")
    assert len(reply["embeds"]) == 1
    reply = await ask(server, world, "!find a red square top: 99")
    assert "`top:` must be a number from 1 to 10" in reply["content"]


async def test_a_public_server_search_waits_once_for_pending_work(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A public `scope: server` search runs twice (this channel's reply, the DM with the rest);
    an upload stuck on its way into the index (a sick CDN node) held up each in turn."""
    monkeypatch.setattr(search_module, "PENDING_WAIT_S", 1.5)
    await server.post_message(world.other, world.bob, "", attachments=[
        ("r.png", shape_png("red", "circle"), "image/png")])  # fmt: skip
    await indexed(glimpse, 1)
    server.stall_media(r"/stuck\.png$")
    await server.post_message(world.general, world.bob, "", attachments=[
        ("stuck.png", shape_png("blue", "square"), "image/png")])  # fmt: skip
    asked = time.monotonic()
    reply = await ask(server, world, "!find a red circle scope: server")
    assert 1.4 < time.monotonic() - asked < 2.6  # one wait of 1.5 s: not none, not two
    assert wording.SENT_BY_DM in reply["content"]
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.alice))
    assert [f"/{world.other}/" in e["url"] for e in dm["embeds"]] == [True]


async def test_a_server_search_from_an_age_restricted_channel_sends_none_by_dm(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Searched from an age-restricted channel, the others count (in the channel's reply, its
    own images only); the copy sent by DM leaves them out: a DM may carry age-restricted
    content only once its reader has allowed it, which a bot cannot see
    (application-commands.mdx, "Using Age-Restricted Commands")."""
    after_dark = server.add_channel(world.guild, "after-dark", nsfw=True)
    for channel in (after_dark, world.other):
        await server.post_message(channel, world.bob, "", attachments=[
            ("r.png", shape_png("red", "circle", seed=channel % 7), "image/png")])  # fmt: skip
    await indexed(glimpse, 2)
    reply = await ask(server, world, "!find a red circle top: 5 scope: server", channel=after_dark)
    assert [f"/{after_dark}/" in e["url"] for e in reply["embeds"]] == [True]
    assert wording.SENT_BY_DM in reply["content"]
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.alice))
    assert [f"/{world.other}/" in e["url"] for e in dm["embeds"]] == [True]


async def test_help_for_a_command_shows_its_syntax(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """discord.py's help lists each parameter under "Arguments:" by its Python name, with "No
    description given" beside it, and its signature line then drops the command's `usage`."""
    find = (await ask(server, world, "!help find"))["content"]
    syntax = '!find "a photo of parrots" [top: 1-10] [scope: channel|server], or an image'
    assert syntax in find and "No description given" not in find and "options" not in find
    caption = (await ask(server, world, "!help caption"))["content"]
    assert "!caption [prompt words]" in caption and "Arguments" not in caption
    listing = (await ask(server, world, "!help"))["content"]
    assert "No Category" not in listing and "RepostChecks" not in listing
