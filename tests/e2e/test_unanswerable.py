"""A channel where the bot reads but may not reply (no Send Messages, or no Read Message History,
which a reply needs: message.mdx, "Create Message"): a text command there is dropped without a
request, since each post Discord refuses counts towards its invalid-request limit
(rate-limits.mdx, "Invalid Request Limit"); the admin is told once in the log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot import wording
from bot.chat.client import Glimpse
from tests.e2e.harness import World, indexed, sync_commands
from tests.e2e.test_real_discord import image
from tests.fakediscord import READ_MESSAGE_HISTORY, SEND_MESSAGES, VIEW_CHANNEL, FakeDiscord

UNANSWERED = "commands in channel %s go unanswered"


def posts_to(server: FakeDiscord, channel: int, since: int) -> list[str]:
    return [
        path
        for method, path in server.requests[since:]
        if method == "POST" and path.startswith(f"/channels/{channel}/")
    ]


@pytest.mark.parametrize("denied", [SEND_MESSAGES, READ_MESSAGE_HISTORY])
async def test_commands_where_the_bot_cannot_reply_send_nothing(
    server: FakeDiscord,
    world: World,
    glimpse: Glimpse,
    caplog: pytest.LogCaptureFixture,
    denied: int,
) -> None:
    bot_role = server.bot_role_id(world.guild)
    server.set_overwrites(world.other, [{"id": bot_role, "type": 0, "allow": 0, "deny": denied}])
    await server.flush()
    before = len(server.requests)
    with caplog.at_level(logging.WARNING, logger="bot.chat.client"):
        for text in ("!caption", "!find a red circle", "!nosuchoption", "!help"):
            await server.post_message(world.other, world.alice, text)
        await server.post_message(world.other, world.alice, "!caption", attachments=[
            image("r.png", "red", "circle")])  # fmt: skip
        await server.flush()
        await asyncio.sleep(0.5)
    assert posts_to(server, world.other, before) == []
    warnings = [r for r in caplog.records if r.getMessage().startswith(UNANSWERED % world.other)]
    assert len(warnings) == 1, caplog.text
    await indexed(glimpse, 1)  # what it reads there is still indexed
    # Where it may reply, the same command is answered.
    await server.post_message(world.general, world.alice, "!caption", attachments=[
        image("g.png", "green", "square")])  # fmt: skip
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "a green square"


async def test_the_admin_is_told_again_after_the_permission_came_back_and_went(
    server: FakeDiscord, world: World, glimpse: Glimpse, caplog: pytest.LogCaptureFixture
) -> None:
    denied = [{"id": server.bot_role_id(world.guild), "type": 0, "allow": 0,
               "deny": SEND_MESSAGES}]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="bot.chat.client"):
        for overwrites, asked in ((denied, True), ([], True), ([], False), (denied, True)):
            server.set_overwrites(world.other, overwrites)
            await server.flush()
            if asked:
                await server.post_message(world.other, world.alice, "!find a red circle")
                await server.flush()
                await asyncio.sleep(0.3)
        # and once more, with no command while it could answer
        for overwrites in ([], denied):
            server.set_overwrites(world.other, overwrites)
            await server.flush()
        await server.post_message(world.other, world.alice, "!find a red circle")
        await server.flush()
        await asyncio.sleep(0.3)
    warnings = [r for r in caplog.records if r.getMessage().startswith(UNANSWERED % world.other)]
    assert len(warnings) == 3, caplog.text
    assert [e["channel_id"] for e in server.sent] == [str(world.other)]  # answered in between


async def test_slash_commands_are_answered_there(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """An interaction's answer is a webhook's, not the bot's post (receiving-and-responding.mdx):
    it needs neither permission."""
    server.set_overwrites(world.other, [
        {"id": server.bot_role_id(world.guild), "type": 0, "allow": 0,
         "deny": SEND_MESSAGES | READ_MESSAGE_HISTORY}])  # fmt: skip
    await sync_commands(server)
    it = await server.slash_command(
        world.other, world.alice, "caption", attachments=[image("b.png", "blue", "circle")]
    )
    assert (await it.wait_for_response())["content"] == "a blue circle"


async def test_a_members_choices_about_their_images_still_take_effect_there(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """`!forget`, `!optout` and `!optin` run even where the bot may not reply: a member's
    privacy must not depend on the channel's permissions. The answer comes by DM."""
    await server.post_message(world.other, world.bob, "", attachments=[
        image("b.png", "blue", "circle")])  # fmt: skip
    await indexed(glimpse, 1)
    bot_role = server.bot_role_id(world.guild)
    server.set_overwrites(world.other, [
        {"id": bot_role, "type": 0, "allow": 0, "deny": SEND_MESSAGES}])  # fmt: skip
    await server.flush()
    before = len(server.requests)
    await server.post_message(world.other, world.bob, "!forget")
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.bob))
    assert dm["content"] == wording.forgotten(1, None, in_server=True)
    await indexed(glimpse, 0)
    await server.post_message(world.other, world.bob, "!optout")
    opted_out = wording.opted_out(0, in_server=True)
    await server.wait_for_sent(
        lambda sent: sent["content"] == opted_out, channel_id=server.dm_channel(world.bob)
    )
    assert glimpse.index.keeps_out(world.guild, world.bob, 1 << 62)
    assert posts_to(server, world.other, before) == []


@pytest.mark.parametrize("denied", [VIEW_CHANNEL, READ_MESSAGE_HISTORY])
async def test_slash_commands_where_the_bot_cannot_read_say_so(
    server: FakeDiscord, world: World, glimpse: Glimpse, denied: int
) -> None:
    """Slash commands are offered wherever the member may use them, whatever the bot may
    read: without the channel's history, there is no latest image and nothing indexed."""
    await server.post_message(world.other, world.bob, "", attachments=[
        image("b.png", "blue", "circle")])  # fmt: skip
    await indexed(glimpse, 1)
    bot_role = server.bot_role_id(world.guild)
    server.set_overwrites(world.other, [{"id": bot_role, "type": 0, "allow": 0, "deny": denied}])
    await sync_commands(server)
    it = await server.slash_command(world.other, world.alice, "caption")
    assert (await it.wait_for_response())["content"] == wording.BOT_CANNOT_READ_TO_CAPTION
    it = await server.slash_command(world.other, world.alice, "find", {"query": "a circle"})
    reply = await it.wait_for_response(timeout=30)
    assert reply["content"] == wording.BOT_CANNOT_READ and reply["embeds"] == []
