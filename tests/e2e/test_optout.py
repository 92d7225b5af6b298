"""`!optout` and `!optin`: a member's images leave the index and stay out until they opt in."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import World, bot_settings, indexed, is_indexed, running, shape_png
from tests.fakediscord import FakeDiscord


def png(name: str, colour: str = "red", shape: str = "square") -> tuple[str, bytes, str]:
    return (name, shape_png(colour, shape), "image/png")


async def ask(server: FakeDiscord, channel: int, who: int, text: str) -> str:
    await server.post_message(channel, who, text)
    return str((await server.wait_for_sent(channel_id=channel, timeout=15))["content"])


async def test_opting_out_removes_and_keeps_out_across_restarts_until_opting_in(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data")
    async with running(settings) as bot:
        mine = await server.post_message(world.general, world.bob, "", attachments=[png("a.png")])
        await server.post_message(world.general, world.carol, "", attachments=[png("c.png")])
        await indexed(bot, 2)
        reply = await ask(server, world.general, world.bob, "!optout")
        assert reply.startswith("Done: I removed 1 image of yours from this server's index")
        assert "until you say `optin`" in reply
        assert not await is_indexed(bot, int(mine["id"]), int(mine["attachments"][0]["id"]))
        await server.post_message(world.general, world.bob, "", attachments=[png("b.png")])
        await indexed(bot, 1)
        assert await bot.index.count() == 1  # carol's only
    async with running(settings) as bot:  # the choice survives a restart, catch-up included
        later = await server.post_message(world.general, world.bob, "", attachments=[png("d.png")])
        await indexed(bot, 1)
        assert await bot.index.count() == 1
        reply = await ask(server, world.general, world.bob, "!optin")
        assert reply.startswith("Done: I'll index the images you post in this server from now on")
        new = await server.post_message(world.general, world.bob, "", attachments=[png("e.png")])
        await indexed(bot, 2)
        assert await is_indexed(bot, int(new["id"]), int(new["attachments"][0]["id"]))
        assert not await is_indexed(bot, int(later["id"]), int(later["attachments"][0]["id"]))
        again = await ask(server, world.general, world.bob, "!optin")
        assert again.startswith("You were not opted out")


async def test_opting_out_in_a_dm_covers_that_conversation_and_help_lists_both(
    server: FakeDiscord, world: World, glimpse: object
) -> None:
    dm = server.dm_channel(world.carol)
    await server.post_message(dm, world.carol, "", attachments=[png("a.png", "blue")])
    await indexed(glimpse, 1)  # type: ignore[arg-type]
    reply = await ask(server, dm, world.carol, "!optout")
    assert reply.startswith("Done: I removed 1 image of yours from this conversation's index")
    help_text = await ask(server, world.general, world.alice, "!help")
    assert "optout" in help_text and "optin" in help_text


async def test_edits_of_an_indexed_message_leave_no_url_behind(
    server: FakeDiscord, world: World, glimpse: object
) -> None:
    posted = await server.post_message(world.general, world.bob, "x", attachments=[png("a.png")])
    await indexed(glimpse, 1)  # type: ignore[arg-type]
    for n in range(5):  # each edit offers the same, already indexed, image again
        await server.edit_message(world.general, int(posted["id"]), content=f"edit {n}")
    await indexed(glimpse, 1)  # type: ignore[arg-type]
    assert glimpse.indexer.uploads.urls == {}
