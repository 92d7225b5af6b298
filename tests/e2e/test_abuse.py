"""Mentions never ping, bots are ignored, and a DM's `!find` sees only that DM."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.chat.client import Glimpse
from bot.markdown import as_typed
from tests.e2e.harness import World, indexed, reply_to, shape_png, sync_commands
from tests.e2e.test_alt_text_and_animations import described
from tests.fakediscord import FakeDiscord, Upload


def hostile(world: World) -> str:
    return f"@everyone @here <@&{world.mods}> <@{world.alice}> <@!{world.carol}>"


def assert_never_pings(entry: dict[str, Any]) -> None:
    allowed = entry["allowed_mentions"]
    assert allowed is not None and allowed.get("parse") == [], allowed
    assert not allowed.get("users") and not allowed.get("roles"), allowed
    assert not allowed.get("replied_user"), allowed
    assert entry["mentions"] == [], entry  # whom Discord would notify, given allowed_mentions


async def test_replies_never_ping(server: FakeDiscord, world: World, glimpse: Glimpse) -> None:
    text = hostile(world)
    png = ("r.png", shape_png("red", "circle"), "image/png")
    await server.post_message(world.general, world.bob, "", attachments=[png])
    await indexed(glimpse, 1)
    checked: list[dict[str, Any]] = []

    async def reply_to(content: str, **kwargs: Any) -> dict[str, Any]:
        await server.post_message(world.general, world.bob, content, **kwargs)
        checked.append(await server.wait_for_sent(channel_id=world.general))
        return checked[-1]

    assert (await reply_to(f"!find {text} a red circle"))["embeds"]
    await reply_to(f"!find {text} top: 99")  # an error reply
    assert (await reply_to(f"!caption {text}", attachments=[png]))["content"]
    named = (f"{text}.pdf", b"%PDF-1.4\n", "application/pdf")
    listed = await reply_to("!caption", attachments=[png, named])
    assert "@everyone" in listed["content"]  # the uploader's file name is echoed, and inert

    await sync_commands(server)
    for name, options in (("find", {"query": text}), ("caption", {"prompt": text})):
        interaction = await server.slash_command(world.general, world.bob, name, options)
        checked.append(await interaction.wait_for_response())
    assert len(checked) == 6
    for entry in checked:
        assert_never_pings(entry)


async def test_other_bots_and_its_own_messages_are_ignored(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    robot = server.add_user("robot", bot=True)
    server.add_member(world.guild, robot)
    png = ("b.png", shape_png("blue", "square"), "image/png")
    await server.post_message(world.general, robot, "!caption", attachments=[png])
    await server.post_message(world.general, server.bot_id, "!caption", attachments=[png])
    await server.post_message(
        world.general, robot, f"<@{server.bot_id}> caption", attachments=[png]
    )
    await server.post_message(world.general, world.carol, "!caption", attachments=[png])
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "a blue square"
    assert int(reply["author"]["id"]) == server.bot_id
    await asyncio.sleep(0.5)  # time enough for a wrong reply to the bots' commands to arrive
    assert len(server.sent) == 1


async def test_caption_and_find_in_a_dm_see_only_that_dm(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    dm = server.dm_channel(world.carol)
    await server.post_message(
        world.general,
        world.carol,
        "",
        attachments=[("g.png", shape_png("red", "circle"), "image/png")],
    )
    await server.post_message(
        dm,
        world.carol,
        "!caption",
        attachments=[("d.png", shape_png("blue", "square"), "image/png")],
    )
    assert (await server.wait_for_sent(channel_id=dm))["content"] == "a blue square"
    await indexed(glimpse, 2)

    await server.post_message(dm, world.carol, "!find a red circle top: 5")
    reply = await server.wait_for_sent(channel_id=dm)
    urls = [embed["url"] for embed in reply["embeds"]]
    assert len(urls) == 1 and f"/{dm}/" in urls[0], urls  # the DM's blue square, nothing else
    await server.post_message(dm, world.carol, "!find a red circle scope: server")
    reply = await server.wait_for_sent(channel_id=dm)
    assert all(f"/{world.general}/" not in e["url"] for e in reply.get("embeds", [])), reply

    await server.post_message(world.general, world.carol, "!find a blue square top: 5")
    reply = await server.wait_for_sent(channel_id=world.general)
    assert all(f"/{dm}/" not in e["url"] for e in reply["embeds"])  # and the other way round


async def test_member_text_repeated_by_the_bot_reads_as_typed(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """No masked link, heading or broken spoiler cover reaches the bot's own replies from what a
    member wrote: a search word, alt text, a file name."""
    posted = await server.post_message(
        world.general, world.bob, '!find "cats" [Claim_Nitro](https://evil.example)'
    )
    reply = await reply_to(server, posted)
    assert r"'\[Claim\_Nitro\](https://evil.example)'" in reply["content"], reply["content"]

    links = "[a](https://b.co) [Verify here](https://evil.example)"
    posted = await server.post_message(world.general, world.bob, "!caption", attachments=[
        described("a.png", "red", "circle", links)])  # fmt: skip
    reply = await reply_to(server, posted)
    assert reply["content"].endswith(r"\[a\](https://b.co) \[Verify here\](https://evil.example)")

    posted = await server.post_message(world.general, world.bob, "!caption", attachments=[
        described("b.png", "blue", "square", "cats | dogs", spoiler=True),
        Upload("SPOILER_plot.pdf", b"%PDF-1.4\n", "application/pdf")])  # fmt: skip
    reply = await reply_to(server, posted)
    first, alt, refused = reply["content"].split("\n")
    assert first == "1. ||a blue square||" and alt == r"-# alt text: ||cats \| dogs||"
    assert refused.startswith("2. ||can't use SPOILER\\_plot.pdf") and refused.endswith("||")


async def test_a_spoiler_file_given_to_slash_caption_is_captioned_covered(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await sync_commands(server)
    it = await server.slash_command(world.general, world.bob, "caption", attachments=[
        ("SPOILER_g.png", shape_png("green", "circle"), "image/png")])  # fmt: skip
    assert (await it.wait_for_response())["content"] == "||a green circle||"


async def test_help_for_a_very_long_word_fits_in_a_reply(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """discord.py's help repeats the word it found no command for; a message of one long word
    (2000 characters, or mentions that grow when defused) would make a refused reply."""
    for word in ("x" * 1994, "@here" * 398):
        await server.post_message(world.general, world.bob, f"!help {word}")
        said = await server.wait_for_sent(lambda e: e["content"].startswith("No command called"))
        assert len(said["content"]) <= 2000


async def test_help_repeats_a_word_as_typed(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A masked link in the word would be a link the bot posted."""
    word = "[click](https://example.com)"
    await server.post_message(world.general, world.bob, f"!help {word}")
    said = await server.wait_for_sent(lambda e: e["content"].startswith("No command called"))
    assert said["content"] == f'No command called "{as_typed(word)}" found.'
    assert "[click](" not in said["content"]
