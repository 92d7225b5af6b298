"""A channel can let a member view it and post without reading its earlier messages (Read
Message History denied; message.mdx, "Get Channel Messages": without it no messages are
returned). Its images are earlier messages: neither `!find` nor `!caption` with no image of its
own shows them to that member. Nor does anyone's public reply there show them: that member
would see it too."""

from __future__ import annotations

from bot import wording
from bot.chat.client import Glimpse
from tests.e2e.harness import World, sync_commands
from tests.e2e.test_real_discord import command, image, settled
from tests.fakediscord import READ_MESSAGE_HISTORY, FakeDiscord


async def bob_sees_general_without_its_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> tuple[dict, dict]:
    """A red circle in general and a blue one in other (returned); bob may not read general's
    history."""
    red = await server.post_message(world.general, world.alice, "", attachments=[
        image("r.png", "red", "circle")])  # fmt: skip
    blue = await server.post_message(world.other, world.alice, "", attachments=[
        image("b.png", "blue", "circle")])  # fmt: skip
    await settled(server, glimpse, 2)
    server.set_overwrites(world.general, [
        {"id": world.bob, "type": 1, "allow": 0, "deny": READ_MESSAGE_HISTORY}])  # fmt: skip
    await server.flush()
    return red, blue


async def test_find_in_the_channel_shows_nothing_of_its_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await bob_sees_general_without_its_history(server, world, glimpse)
    reply = await command(server, world.general, world.bob, "!find a red circle")
    assert reply["content"] == wording.NO_HISTORY and reply["embeds"] == []
    # Carol, with the history, is shown its link: bob sees her reply too.
    reply = await command(server, world.general, world.carol, "!find a red circle")
    assert reply["content"] == wording.HISTORY_NOT_SHOWN
    (embed,) = reply["embeds"]
    assert f"/{world.general}/" in embed["url"] and "image" not in embed
    assert embed["description"] == embed["url"]  # no poster either


async def test_a_public_reply_shows_images_only_where_all_its_readers_read_the_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Judged by role too: @everyone sees general without its history, mods read it."""
    await server.post_message(world.general, world.bob, "", attachments=[
        image("r.png", "red", "circle")])  # fmt: skip
    await settled(server, glimpse, 1)
    server.set_overwrites(world.general, [
        {"id": world.guild, "type": 0, "allow": 0, "deny": READ_MESSAGE_HISTORY},
        {"id": world.mods, "type": 0, "allow": READ_MESSAGE_HISTORY, "deny": 0},
        {"id": server.bot_role_id(world.guild), "type": 0, "allow": READ_MESSAGE_HISTORY,
         "deny": 0}])  # fmt: skip
    await server.flush()
    reply = await command(server, world.general, world.alice, "!find a red circle")
    assert reply["content"] == wording.HISTORY_NOT_SHOWN
    (embed,) = reply["embeds"]
    assert "image" not in embed and embed["description"] == embed["url"]
    await sync_commands(server)
    it = await server.slash_command(
        world.general, world.alice, "find", {"query": "a red circle", "scope": "server"}
    )
    private = await it.wait_for_response(timeout=30)
    assert private["ephemeral"] and "image" in private["embeds"][0]  # the asker's alone
    server.set_overwrites(world.general, [])  # everyone reads the history again
    await server.flush()
    reply = await command(server, world.general, world.alice, "!find a red circle")
    assert reply["content"] == "" and "image" in reply["embeds"][0]


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
    # Carol, with the history, is refused the latest image too: bob would read its caption.
    before = len(server.requests)
    reply = await command(server, world.general, world.carol, "!caption")
    assert reply["content"] == wording.HISTORY_NOT_SHARED_TO_CAPTION
    reads = [path for method, path in server.requests[before:] if method == "GET"]
    assert not any(path.startswith(f"/channels/{world.general}/messages") for path in reads)
    # In the other channel, which everyone reads, the latest image is captioned.
    await server.post_message(world.other, world.bob, "", attachments=[
        image("t.png", "green", "triangle")])  # fmt: skip
    reply = await command(server, world.other, world.carol, "!caption")
    assert reply["content"].startswith("a green triangle\n-# captioned the latest image")


async def test_the_caption_menu_answers_the_asker_alone_where_some_lack_the_history(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """The menu works on any message the asker sees, an old one too; bob, who sees general
    without its history, would read its caption in the channel."""
    red, blue = await bob_sees_general_without_its_history(server, world, glimpse)
    await sync_commands(server)
    it = await server.context_menu(world.general, world.carol, "Caption image", int(red["id"]))
    reply = await it.wait_for_response(timeout=30)
    assert reply["content"].splitlines()[0] == "a red circle" and reply["ephemeral"]
    it = await server.context_menu(world.other, world.carol, "Caption image", int(blue["id"]))
    reply = await it.wait_for_response(timeout=30)
    assert reply["content"].splitlines()[0] == "a blue circle" and not reply["ephemeral"]
