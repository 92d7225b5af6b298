"""The test server behaves as Discord does where the bot could tell: media URLs, limits, command
replies, forwards, spoilers, threads, permission changes (real discord.py, 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import (
    EMBED_LINKS,
    EXTERNAL_PROXY_HOSTS,
    INVITE_PERMISSIONS,
    MANAGE_THREADS,
    URL_LIFETIME_S,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    FakeDiscord,
    Upload,
)
from tests.fakediscord.payloads import CONNECT, VOICE_BASED
from tests.test_fakediscord import (
    StartBot,
    World,
    collect,
    make_bot,
    png,
    server,
    start_bot,
    world,
)

__all__ = ["server", "start_bot", "world"]  # fixtures

CDN_URL = re.compile(
    r"^https://cdn\.discordapp\.com/attachments/(\d+)/(\d+)/([^?]+)"
    r"\?ex=[0-9a-f]{8}&is=[0-9a-f]{8}&hm=[0-9a-f]{64}&$"
)


async def fetch(url: str) -> tuple[int, bytes]:
    """GET as any aiohttp client of this process would (the product's and discord.py's do)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def test_media_is_served_at_discords_names_and_expires(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot())
    data = png(16)
    posted = await server.post_message(
        world.general, world.alice, "", attachments=[("shape.png", data, "image/png")]
    )
    att = dict(posted["attachments"][0])  # (the stored one is refreshed in place)
    assert CDN_URL.match(att["url"]).groups() == (str(world.general), att["id"], "shape.png")  # type: ignore[union-attr]
    assert att["proxy_url"] == att["url"].replace("cdn.discordapp.com", "media.discordapp.net")
    assert await fetch(att["url"]) == (200, data)
    assert await fetch(att["proxy_url"]) == (200, data)
    path = att["url"].split("discordapp.com", 1)[1]
    assert (await fetch(server.base_url + path))[0] == 404  # never from the API's own host
    assert server.unknown_requests == [("GET", path.split("?")[0])]
    server.unknown_requests.clear()
    assert (await fetch(att["url"].replace("&hm=", "&hm=0")))[0] == 404  # tampered

    await server.advance(URL_LIFETIME_S + 1)
    assert await fetch(att["url"]) == (404, b"This content is no longer available.")
    channel = bot.get_channel(world.general)
    assert isinstance(channel, discord.TextChannel)
    fresh = (await channel.fetch_message(int(posted["id"]))).attachments[0]
    assert fresh.url != att["url"] and CDN_URL.match(fresh.url)
    assert await fresh.read() == data
    server.expire_media_urls()  # at once, without moving the clock
    assert (await fetch(fresh.url))[0] == 404
    again = (await channel.fetch_message(int(posted["id"]))).attachments[0]
    assert again.url != fresh.url and await again.read() == data


async def test_link_previews_arrive_later_through_the_external_proxy(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot())
    server.preview_delay = 0.2
    edits = collect(bot, "on_raw_message_edit")
    image = png(24, "blue")
    server.host_on_web("https://example.com/pics/cat.png?size=2", image)
    started = time.monotonic()
    posted = await server.post_message(
        world.general, world.bob, "look https://example.com/pics/cat.png?size=2 <https://x.y/z>"
    )
    assert posted["embeds"] == []  # nothing yet
    await server.previews_settled()
    assert time.monotonic() - started >= 0.2
    await server.flush()
    await asyncio.sleep(0.02)
    (edit,) = edits
    (embed,) = edit.message.embeds
    assert embed.type == "image" and embed.url == "https://example.com/pics/cat.png?size=2"
    proxy = embed.thumbnail.proxy_url
    assert proxy and proxy.split("/")[2] in EXTERNAL_PROXY_HOSTS
    assert proxy.split("/")[2] == server.external_proxy_host(embed.url)
    assert (embed.thumbnail.width, embed.thumbnail.height) == (24, 24)
    assert await fetch(proxy) == (200, image)
    assert edit.message.edited_at is None  # an unfurl is not an edit by the author


async def test_a_spoilered_link_previews_and_one_without_embed_links_does_not(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    no_embeds = {"id": world.guild, "type": 0, "allow": 0, "deny": EMBED_LINKS}  # @everyone
    plain = server.add_channel(world.guild, "plain", overwrites=[no_embeds])
    await start_bot(make_bot())
    server.preview_delay = 0.05
    server.host_on_web("https://example.com/cat.png", png(24, "blue"))
    covered = await server.post_message(world.general, world.bob, "||https://example.com/cat.png||")
    bare = await server.post_message(plain, world.bob, "https://example.com/cat.png")
    await server.previews_settled()
    (preview,) = server.messages[world.general][int(covered["id"])]["embeds"]
    assert preview["url"] == "https://example.com/cat.png"
    assert server.messages[plain][int(bare["id"])]["embeds"] == []


async def test_bot_embeds_are_filled_in_and_limits_refused(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot())
    posted = await server.post_message(
        world.general, world.alice, "", attachments=[("a.png", png(20), "image/png")]
    )
    url = posted["attachments"][0]["url"]
    channel = bot.get_channel(world.general)
    assert isinstance(channel, discord.TextChannel)
    embeds = [discord.Embed(title=f"hit {i}", url="https://discord.com/x") for i in range(2)]
    embeds[0].set_image(url=url)
    embeds.append(discord.Embed(title="other", url="https://discord.com/y"))
    sent = await channel.send(embeds=embeds)
    entry = server.sent[-1]
    assert [e["type"] for e in entry["embeds"]] == ["rich"] * 3
    image = entry["embeds"][0]["image"]
    assert image["url"] == url and image["proxy_url"].startswith("https://media.discordapp.net/")
    assert (image["width"], image["height"]) == (20, 20)
    assert sent.embeds[0].image.proxy_url == image["proxy_url"]
    # message.mdx, "Embed Limits": embeds that share a url show as the first of them.
    assert [e["title"] for e in entry["visible_embeds"]] == ["hit 0", "other"]

    cases = [
        ({"content": "x" * 2001}, "content"),
        ({"embed": discord.Embed(title="t" * 257)}, "embeds.0.title"),
        ({"embeds": [discord.Embed(description="d" * 4000) for _ in range(2)]}, "embeds"),
    ]
    for kwargs, field in cases:
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(**kwargs)  # type: ignore[call-overload]
        assert info.value.status == 400 and info.value.code == 50035
        assert f"In {field}: " in info.value.text, info.value.text


async def test_rate_limits_answer_as_discord_does(server: FakeDiscord, world: World) -> None:
    headers = {"Authorization": f"Bot {server.token}", "Content-Type": "application/json"}
    url = f"{server.api_url}/channels/{world.general}/messages"
    async with aiohttp.ClientSession(headers=headers) as session:
        answers = []
        for i in range(6):
            async with session.post(url, json={"content": f"m{i}"}) as response:
                answers.append((response.status, dict(response.headers), await response.json()))
        assert [status for status, _, _ in answers] == [200] * 5 + [429]
        assert [h["X-RateLimit-Remaining"] for _, h, _ in answers[:5]] == ["4", "3", "2", "1", "0"]
        _, refused, body = answers[5]
        assert refused["X-RateLimit-Scope"] == "user" and "X-RateLimit-Global" not in refused
        assert body["global"] is False and 0 < body["retry_after"] <= 5 and body["code"] == 0
        other = f"{server.api_url}/channels/{world.hidden}/messages"
        async with session.post(other, json={"content": "x"}) as response:
            assert response.status == 403  # another channel's bucket; the bot cannot see it

        async def me() -> tuple[int, str | None]:
            async with session.get(f"{server.api_url}/users/@me") as response:
                return response.status, response.headers.get("X-RateLimit-Global")

        globally = await asyncio.gather(*(me() for _ in range(60)))  # 60 at once: over 50/s
        assert (429, "true") in globally and globally.count((200, None)) <= 50
    assert server.invalid_requests[:2] == [
        ("POST", f"/channels/{world.general}/messages", 429),
        ("POST", f"/channels/{world.hidden}/messages", 403),
    ]
    assert len(server.invalid_requests) == 2 + globally.count((429, "true"))


async def test_discord_py_keeps_within_the_limits(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    server.ratelimits.message = (5, 0.5)  # Discord's 5 per 5 s, shortened for the test
    bot = await start_bot(make_bot())
    channel = bot.get_channel(world.general)
    assert isinstance(channel, discord.TextChannel)
    started = time.monotonic()
    await asyncio.gather(*(channel.send(f"n{i}") for i in range(12)))
    assert time.monotonic() - started >= 2 * 0.5  # three windows for twelve messages
    assert len(server.sent) == 12
    assert len(server.invalid_requests) <= 1  # at most the first, before the bucket is known


async def test_command_replies_are_messages_of_the_application(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = make_bot()
    seen = collect(bot, "on_message")

    @bot.tree.command(name="both", description="Answer, then follow up, then privately")
    async def both(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("first")
        await interaction.followup.send("second")
        await interaction.followup.send("secret", ephemeral=True)

    async def look(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"{len(message.attachments)} file(s)")

    bot.tree.add_command(app_commands.ContextMenu(name="Look", callback=look))
    await start_bot(bot)
    await bot.tree.sync()
    it = await server.slash_command(world.general, world.alice, "both")
    await it.wait_for_response(predicate=lambda e: e["content"] == "secret")
    target = await server.post_message(world.general, world.bob, "", attachments=[
        ("t.png", png(), "image/png")])  # fmt: skip
    menu = await server.context_menu(world.general, world.alice, "Look", int(target["id"]))
    await menu.wait_for_response()
    await server.flush()
    await asyncio.sleep(0.05)
    replies = {m.content: m for m in seen if m.author.id == server.bot_id}
    first, second, secret = replies["first"], replies["second"], replies["secret"]
    for message in (first, second):
        assert message.type is discord.MessageType.chat_input_command
        assert message.webhook_id == server.application_id == message.application_id
        assert message.interaction_metadata is not None
        assert message.interaction_metadata.user.id == world.alice
        assert int(message.id) in server.messages[world.general]
    assert second.interaction_metadata.original_response_message_id == first.id  # type: ignore[union-attr]
    assert secret.flags.ephemeral and secret.guild is None  # reached the bot as a DM does
    assert secret.id not in server.messages[world.general]
    menu_reply = replies["1 file(s)"]
    assert menu_reply.type is discord.MessageType.context_menu_command
    assert menu_reply.reference is not None
    assert menu_reply.reference.message_id == int(target["id"])


async def test_a_followup_keeps_the_visibility_of_the_defer_it_fills(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    """The first followup after a deferral fills the loading message, whose visibility the
    defer chose (receiving-and-responding.mdx, "Create Followup Message"): asking for an
    ephemeral one then still answers in public. Once that message is deleted, a followup is a
    message of its own, ephemeral when asked."""
    bot = make_bot()

    @bot.tree.command(name="loud", description="Defer in public, then follow up privately")
    async def loud(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("meant to be private", ephemeral=True)

    @bot.tree.command(name="quiet", description="Defer in public, delete it, then privately")
    async def quiet(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.delete_original_response()
        await interaction.followup.send("private indeed", ephemeral=True)

    await start_bot(bot)
    await bot.tree.sync()
    loud_it = await server.slash_command(world.general, world.alice, "loud")
    filled = await loud_it.wait_for_response()
    assert filled["content"] == "meant to be private" and not filled["ephemeral"]
    assert int(filled["id"]) in server.messages[world.general]
    quiet_it = await server.slash_command(world.general, world.alice, "quiet")
    private = await quiet_it.wait_for_response()
    assert private["content"] == "private indeed" and private["ephemeral"]
    shown = [m["content"] for m in server.messages[world.general].values()]
    assert "private indeed" not in shown and "meant to be private" in shown
    assert all(m["interaction_metadata"]["id"] != str(quiet_it.id)
               for m in server.messages[world.general].values()
               if m.get("interaction_metadata"))  # fmt: skip  # the loading message is gone


async def test_without_embed_links_embeds_are_dropped_and_alone_refused(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    no_embeds = {"id": server.bot_role_id(world.guild), "type": 0, "allow": 0, "deny": EMBED_LINKS}
    plain = server.add_channel(world.guild, "plain", overwrites=[no_embeds])
    bot = await start_bot(make_bot())
    channel = bot.get_channel(plain)
    assert isinstance(channel, discord.TextChannel)
    embed = discord.Embed(title="a result", url="https://discord.com/channels/1/2/3")
    with pytest.raises(discord.Forbidden) as refused:
        await channel.send(embed=embed)
    assert refused.value.code == 50013
    sent = await channel.send("words too", embed=embed)
    assert sent.content == "words too" and sent.embeds == []


async def test_interaction_tokens_expire_after_fifteen_minutes(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = make_bot()
    go_on, done = asyncio.Event(), asyncio.Event()
    outcome: list[BaseException | None] = []

    @bot.tree.command(name="slow", description="Takes a while")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await go_on.wait()
        try:
            await interaction.followup.send("done at last")
            outcome.append(None)
        except discord.HTTPException as exc:
            outcome.append(exc)
        done.set()

    await start_bot(bot)
    await bot.tree.sync()
    it = await server.slash_command(world.general, world.alice, "slow")
    await it.wait_for_callback()
    await server.advance(15 * 60 + 1)
    go_on.set()
    await asyncio.wait_for(done.wait(), 10)
    (error,) = outcome
    assert isinstance(error, discord.HTTPException)
    assert error.status == 401 and error.code == 50027
    assert ("POST", f"/webhooks/{server.application_id}/{it.token}", 401) in (
        server.invalid_requests
    )


async def test_forwards_spoilers_and_alt_text(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot())
    got = collect(bot, "on_message")
    edits = collect(bot, "on_raw_message_edit")
    upload = Upload("cat.png", png(), "image/png", description="a red cat", spoiler=True)
    source = await server.post_message(world.hidden, world.alice, "", attachments=[upload])
    att_id = int(source["attachments"][0]["id"])
    forward = await server.forward_message(world.general, world.alice, world.hidden,
                                           int(source["id"]))  # fmt: skip
    await server.edit_message(world.hidden, int(source["id"]), attachment_changes={
        att_id: {"is_spoiler": False, "description": None}})  # fmt: skip
    await server.flush()
    await asyncio.sleep(0.05)
    (message,) = [m for m in got if m.id == int(forward["id"])]
    assert message.flags.forwarded and message.content == "" and message.attachments == []
    assert message.reference is not None
    assert message.reference.type is discord.MessageReferenceType.forward
    (snapshot,) = message.message_snapshots
    (shown,) = snapshot.attachments
    assert shown.is_spoiler() and shown.description == "a red cat"  # as it was when forwarded
    assert await shown.read() == png()
    assert edits == []  # the hidden channel's edit does not reach the bot
    source_now = server.message(world.hidden, int(source["id"]))["attachments"][0]
    assert source_now["flags"] == 0 and "description" not in source_now


async def test_threads_archive_unarchive_and_are_listed(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    thread = server.add_thread(world.general, "pics", member_ids=[world.alice, server.bot_id])
    private = server.add_thread(world.general, "staff", private=True, member_ids=[server.bot_id])
    bot = await start_bot(make_bot())
    guild = bot.get_guild(world.guild)
    channel = bot.get_channel(world.general)
    assert guild is not None and isinstance(channel, discord.TextChannel)
    assert guild.get_thread(thread) is not None
    await server.archive_thread(thread)
    await asyncio.sleep(0.02)
    assert guild.get_thread(thread) is None  # discord.py drops archived threads
    assert [t.id async for t in channel.archived_threads()] == [thread]
    assert [t.id async for t in channel.archived_threads(private=True, joined=True)] == []
    with pytest.raises(discord.Forbidden):  # listing private ones needs Manage Threads
        _ = [t async for t in channel.archived_threads(private=True)]
    await server.post_message(thread, world.alice, "back")
    await asyncio.sleep(0.02)
    assert guild.get_thread(thread) is not None and not guild.get_thread(thread).archived  # type: ignore[union-attr]

    await server.advance(24 * 3600)  # auto_archive_duration 1440 minutes without activity
    await asyncio.sleep(0.02)
    assert guild.get_thread(thread) is None and guild.get_thread(private) is None
    assert [t.id async for t in channel.archived_threads(private=True, joined=True)] == [private]
    assert server.guild_payload(world.guild, all_members=False)["threads"] == []


async def test_permission_changes_arrive_as_discord_sends_them(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    # Without the members intent, as the product asks.
    member_intent_off = commands.Bot(
        "!", intents=discord.Intents.default(), guild_ready_timeout=0.05
    )
    secret_thread = server.add_thread(world.hidden, "inner", member_ids=[world.alice])
    bot = await start_bot(member_intent_off)
    guild = bot.get_guild(world.guild)
    assert guild is not None and guild.me is not None
    hidden = guild.get_channel(world.hidden)
    assert hidden is not None and not hidden.permissions_for(guild.me).view_channel
    bot_role = server.bot_role_id(world.guild)
    server.set_overwrites(world.hidden, [
        {"id": world.guild, "type": 0, "allow": 0, "deny": VIEW_CHANNEL},
        {"id": bot_role, "type": 0, "allow": VIEW_CHANNEL, "deny": 0},
    ])  # fmt: skip
    await server.flush()
    await asyncio.sleep(0.02)
    assert hidden.permissions_for(guild.me).view_channel  # CHANNEL_UPDATE
    assert guild.get_thread(secret_thread) is not None  # THREAD_LIST_SYNC on gaining access

    updated = collect(bot, "on_member_update")
    extra = server.add_role(world.guild, "helpers", MANAGE_THREADS)
    server.set_member_roles(world.guild, server.bot_id, [bot_role, extra])  # type: ignore[list-item]
    server.set_member_roles(world.guild, world.bob, [extra])
    await server.flush()
    await asyncio.sleep(0.02)
    assert guild.me.guild_permissions.manage_threads  # GUILD_MEMBER_UPDATE for itself
    assert [member.id for member in updated] == [server.bot_id]  # not for bob
    server.delete_role(world.guild, extra)
    await server.flush()
    await asyncio.sleep(0.02)
    assert guild.get_role(extra) is None and not guild.me.guild_permissions.manage_threads


async def test_the_bot_has_exactly_the_invite_permissions(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot(make_bot())
    guild = bot.get_guild(world.guild)
    assert guild is not None and guild.me is not None
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (invite,) = set(re.findall(r"oauth2/authorize\?\S*permissions=(\d+)", readme))
    assert guild.me.guild_permissions.value == INVITE_PERMISSIONS == int(invite)
    general = guild.get_channel(world.general)
    assert general is not None and general.permissions_for(guild.me).value == INVITE_PERMISSIONS
    # Members' clients still offer commands: Use Application Commands comes with their role.
    bob = guild.get_member(world.bob) or await guild.fetch_member(world.bob)
    assert general.permissions_for(bob).value & USE_APPLICATION_COMMANDS
    server.closed_dms.add(world.bob)
    user = await bot.fetch_user(world.bob)
    with pytest.raises(discord.Forbidden) as info:
        await user.send("hello")
    assert info.value.code == 50007


async def test_voice_and_stage_chats_are_read_only_with_connect(
    server: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    """Reading the messages of a voice or stage channel needs Connect besides View Channel and
    Read Message History (message.mdx, "Get Channel Messages" and "Get Channel Message");
    without it Discord answers 403 Missing Access, although discord.py's `permissions_for`
    still shows the channel as viewable with history."""
    chats = [server.add_channel(world.guild, f"chat-{kind}", kind=kind) for kind in VOICE_BASED]
    posted = [int((await server.post_message(chat, world.alice, "hi"))["id"]) for chat in chats]
    bot = await start_bot(make_bot())
    channels = [bot.get_channel(chat) for chat in chats]
    for channel, message_id in zip(channels, posted, strict=True):
        assert isinstance(channel, discord.VoiceChannel | discord.StageChannel)
        perms = channel.permissions_for(channel.guild.me)
        assert perms.view_channel and perms.read_message_history and not perms.connect
        with pytest.raises(discord.Forbidden) as one:
            await channel.fetch_message(message_id)
        with pytest.raises(discord.Forbidden) as history:
            await anext(channel.history())
        assert one.value.code == history.value.code == 50001

    bot_role = server.bot_role_id(world.guild)
    for chat in chats:
        server.set_overwrites(chat, [{"id": bot_role, "type": 0, "allow": CONNECT, "deny": 0}])
    await server.flush()
    await asyncio.sleep(0.02)
    for channel, message_id in zip(channels, posted, strict=True):
        assert isinstance(channel, discord.VoiceChannel | discord.StageChannel)
        assert channel.permissions_for(channel.guild.me).connect
        assert (await channel.fetch_message(message_id)).id == message_id
        assert [m.id async for m in channel.history()] == [message_id]


async def test_a_child_process_reaches_the_media_hosts_too(
    server: FakeDiscord, world: World
) -> None:
    data = png(9)
    posted = await server.post_message(
        world.general, world.alice, "", attachments=[("c.png", data, "image/png")]
    )
    script = (
        "import asyncio, aiohttp, sys\n"
        "from tests.fakediscord.hostroutes import route_from_environment\n"
        "assert route_from_environment()\n"
        "async def main():\n"
        "    async with aiohttp.ClientSession() as s, s.get(sys.argv[1]) as r:\n"
        "        print(r.status, len(await r.read()))\n"
        "asyncio.run(main())\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, posted["attachments"][0]["url"],
        env={**server.child_environment(), "PYTHONPATH": "."},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(child.communicate(), 60)
    assert output.decode().strip() == f"200 {len(data)}"
