"""The chat of a voice channel is read only with Connect, besides View Channel and Read Message
History (message.mdx, "Get Channel Messages" and "Get Channel Message"): by the member who asks
a `scope: server` find, and by the bot itself."""

from __future__ import annotations

from bot import wording
from bot.chat.client import Glimpse
from tests.e2e.harness import World, sync_commands
from tests.e2e.test_real_discord import image, settled
from tests.e2e.test_sources_and_access import links, private_find
from tests.fakediscord import FakeDiscord
from tests.fakediscord.payloads import CONNECT, VOICE


async def voice_chat_with_an_image(server: FakeDiscord, world: World, glimpse: Glimpse) -> int:
    """A voice channel everyone may view, read and (unless overwritten) connect to, with one
    indexed image of a red circle."""
    lounge = server.add_channel(world.guild, "lounge", kind=VOICE, overwrites=[
        {"id": world.guild, "type": 0, "allow": CONNECT, "deny": 0}])  # fmt: skip
    await server.post_message(lounge, world.alice, "", attachments=[
        image("v.png", "red", "circle")])  # fmt: skip
    await settled(server, glimpse, 1)
    await sync_commands(server)
    return lounge


async def test_a_member_who_may_not_connect_finds_nothing_of_a_voice_chat(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    lounge = await voice_chat_with_an_image(server, world, glimpse)
    server.set_overwrites(lounge, [
        *server.channels[lounge]["permission_overwrites"],
        {"id": world.bob, "type": 1, "allow": 0, "deny": CONNECT},
    ])  # fmt: skip
    await server.flush()
    found = links(await private_find(server, world, "a red circle", world.carol))
    assert any(f"/{lounge}/" in url for url in found), found
    # Bob views the channel and may read its history, but not connect.
    reply = await private_find(server, world, "a red circle", world.bob)
    assert not any(f"/{lounge}/" in url for url in links(reply)), reply


async def test_the_bot_does_not_ask_for_a_voice_chat_it_may_not_connect_to(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    lounge = await voice_chat_with_an_image(server, world, glimpse)
    bot_role = server.bot_role_id(world.guild)
    server.set_overwrites(lounge, [
        *server.channels[lounge]["permission_overwrites"],
        {"id": bot_role, "type": 0, "allow": 0, "deny": CONNECT},
    ])  # fmt: skip
    await server.flush()
    before = len(server.requests)
    reply = await private_find(server, world, "a red circle")
    assert reply["content"] == wording.NOTHING_SHOWABLE and reply["embeds"] == []
    asked = [path for _, path in server.requests[before:] if path.startswith(f"/channels/{lounge}")]
    assert asked == []  # judged from the gateway's permissions, as for a text channel
