"""A locked thread takes posts only from members with Manage Threads (threads.mdx, "Locked
Threads"): the bot, without it, neither describes images there nor points out reposts, and so
never spends a refused request (each counts towards Discord's invalid-request limit)."""

from __future__ import annotations

import asyncio

from bot.chat.client import Glimpse
from tests.e2e.harness import World, indexed
from tests.e2e.test_alt_text_replies import described_by, turn_on
from tests.e2e.test_real_discord import command, image
from tests.fakediscord import MANAGE_THREADS, FakeDiscord


async def test_no_description_or_repost_note_in_a_locked_thread(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await turn_on(server, world, world.general)
    await command(server, world.general, world.alice, "!reposts on")
    keepers = server.add_role(world.guild, "thread keepers", MANAGE_THREADS)
    server.set_member_roles(world.guild, world.alice, [world.mods, keepers])
    thread = server.add_thread(world.general, "announcements")
    first = await server.post_message(thread, world.alice, "", attachments=[
        image("a.png", "red", "circle")])  # fmt: skip
    await described_by(server, first)  # while it is open, as anywhere
    await indexed(glimpse, 1)
    await server.lock_thread(thread)
    await server.post_message(thread, world.alice, "", attachments=[
        image("a.png", "red", "circle")])  # fmt: skip  # a repost, without alt text
    await indexed(glimpse, 2)
    await asyncio.sleep(1.0)
    assert not [r for r in server.invalid_requests if r[0] == "POST" and f"/{thread}/" in r[1]]
