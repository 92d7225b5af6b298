"""A channel can let a member view it and post without reading its earlier messages (Read
Message History denied; message.mdx, "Get Channel Messages": without it no messages are
returned). Its images are earlier messages: neither `!find` nor `!caption` with no image of its
own shows them to that member."""

from __future__ import annotations

from bot import wording
from bot.chat.client import Glimpse
from tests.e2e.harness import World, sync_commands
from tests.e2e.test_real_discord import command, image, settled
from tests.fakediscord import READ_MESSAGE_HISTORY, FakeDiscord


async def bob_sees_general_without_its_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A red circle in general and a blue one in other; bob may not read general's history."""
    await server.post_message(world.general, world.alice, "", attachments=[
        image("r.png", "red", "circle")])  # fmt: skip
    await server.post_message(world.other, world.alice, "", attachments=[
        image("b.png", "blue", "circle")])  # fmt: skip
    await settled(server, glimpse, 2)
    server.set_overwrites(world.general, [
        {"id": world.bob, "type": 1, "allow": 0, "deny": READ_MESSAGE_HISTORY}])  # fmt: skip
    await server.flush()


async def test_find_in_the_channel_shows_nothing_of_its_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await bob_sees_general_without_its_history(server, world, glimpse)
    reply = await command(server, world.general, world.bob, "!find a red circle")
    assert reply["content"] == wording.NO_HISTORY and reply["embeds"] == []
    # Carol, with the history, is shown the image.
    reply = await command(server, world.general, world.carol, "!find a red circle")
    assert len(reply["embeds"]) == 1 and f"/{world.general}/" in reply["embeds"][0]["url"]


async def test_a_public_server_find_shows_nothing_of_this_channel(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await bob_sees_general_without_its_history(server, world, glimpse)
    reply = await command(server, world.general, world.bob, "!find a circle top: 5 scope: server")
    assert reply["embeds"] == []
    assert reply["content"].startswith(wording.NO_HISTORY), reply["content"]
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.bob))
    urls = [embed["url"] for embed in dm["embeds"]]
    assert len(urls) == 1 and f"/{world.other}/" in urls[0], urls


async def test_slash_find_in_the_channel_shows_nothing_of_its_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await bob_sees_general_without_its_history(server, world, glimpse)
    await sync_commands(server)
    it = await server.slash_command(world.general, world.bob, "find", {"query": "a red circle"})
    reply = await it.wait_for_response(timeout=30)
    assert reply["content"] == wording.NO_HISTORY and reply["embeds"] == []
    assert reply["ephemeral"]  # a refusal: the channel need not read it


async def test_caption_without_an_image_does_not_reach_into_the_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await bob_sees_general_without_its_history(server, world, glimpse)
    before = len(server.requests)
    reply = await command(server, world.general, world.bob, "!caption")
    assert reply["content"] == wording.NO_HISTORY_TO_CAPTION
    reads = [path for method, path in server.requests[before:] if method == "GET"]
    assert not any(path.startswith(f"/channels/{world.general}/messages") for path in reads)
    # An image of bob's own is still captioned there.
    reply = await command(server, world.general, world.bob, "!caption", attachments=[
        image("g.png", "green", "square")])  # fmt: skip
    assert reply["content"] == "a green square"
    # Carol, with the history, gets the latest image (bob's) captioned.
    reply = await command(server, world.general, world.carol, "!caption")
    assert reply["content"].startswith("a green square\n-# captioned the latest image")
