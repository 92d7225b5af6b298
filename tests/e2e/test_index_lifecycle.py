"""What gets indexed, what removes it, `!index`, cooldowns, model changes."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot import wording, wording_commands, wording_index
from bot.chat import history
from bot.chat.client import Glimpse
from bot.index import deferrals
from bot.index.background import Indexer
from tests.conftest import TINY_CLIP
from tests.e2e.harness import (
    World,
    bot_settings,
    eventually,
    held,
    indexed,
    reply_to,
    running,
    shape_png,
    sync_commands,
)
from tests.fakediscord import EXTERNAL_PROXY_HOSTS, VIEW_CHANNEL, FakeDiscord
from tests.fakediscord.interaction import Interaction


def on_proxy(server: FakeDiscord, host: str) -> str:
    """A link to an image that Discord previews through ``host`` (it picks the proxy by URL)."""
    return next(
        url
        for url in (f"https://example.com/pictures/{i}.png" for i in range(100))
        if server.external_proxy_host(url) == host
    )


def png_attachment(colour: str, shape: str, seed: int = 0) -> tuple[str, bytes, str]:
    return (f"{colour}-{shape}-{seed}.png", shape_png(colour, shape, seed=seed), "image/png")


async def count(bot: Glimpse, channel: int | None = None) -> int:
    return await bot.index.count(None if channel is None else [channel])


async def test_who_and_what_gets_indexed(server: FakeDiscord, world: World, tmp_path: Path) -> None:
    ignored = server.add_channel(world.guild, "ignored")
    settings = bot_settings(server, tmp_path / "data", IGNORE_CHANNELS=str(ignored))
    other_bot = server.add_user("otherbot", bot=True)
    webhook = server.add_user("captain-hook", bot=True)  # webhook authors are bot users too
    server.add_member(world.guild, other_bot)
    async with running(settings) as bot:
        await server.post_message(
            world.general, other_bot, "", attachments=[png_attachment("red", "circle")]
        )
        await server.post_message(
            ignored, world.alice, "", attachments=[png_attachment("red", "square")]
        )
        await server.post_message(
            world.general, webhook, "", attachments=[png_attachment("blue", "circle")], webhook=True
        )
        await server.post_message(
            world.general, world.alice, "", attachments=[png_attachment("green", "circle")] * 2
        )
        # A member's link to an image: Discord unfurls it about a second later (MESSAGE_UPDATE)
        # with a preview served by its external image proxy. (This test used to post embeds
        # whose proxy_url pointed elsewhere; no sender can set an image's proxy_url, Discord
        # fills it in: message.mdx, "Create Message", Limitations.)
        link = on_proxy(server, EXTERNAL_PROXY_HOSTS[0])
        server.host_on_web(link, shape_png("yellow", "square"))
        await server.post_message(world.general, world.bob, f"look: {link}")
        await server.post_message(
            world.general, world.alice, "!caption", attachments=[png_attachment("red", "triangle")]
        )
        await server.wait_for_sent(channel_id=world.general)  # the bot's reply is never indexed
        await server.previews_settled()
        await indexed(bot, 5)
        assert await count(bot, ignored) == 0
        # webhook, two attachments, the link's preview, !caption's own
        assert await count(bot, world.general) == 5
        # two identical attachments: two rows, one embedding computation
        rows = bot.index._store._conn.execute(
            "SELECT COUNT(DISTINCT content_hash) FROM images"
        ).fetchone()
        assert rows == (4,)


async def test_removal_events(server: FakeDiscord, world: World, glimpse: Glimpse) -> None:
    posted = [
        await server.post_message(
            world.other, world.alice, "", attachments=[png_attachment("red", "circle", i)]
        )
        for i in range(4)
    ]
    thread = server.add_thread(world.general, "pics")
    await server.post_message(thread, world.bob, "", attachments=[png_attachment("blue", "circle")])
    await server.post_message(
        world.general, world.bob, "", attachments=[png_attachment("blue", "square")]
    )
    await indexed(glimpse, 6)

    def total(expected: int, channel: int | None = None) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await count(glimpse, channel) == expected

        return check

    await server.bulk_delete(world.other, [int(posted[0]["id"]), int(posted[1]["id"])])
    await eventually(total(2, world.other))
    await server.delete_channel(world.other)
    await server.delete_channel(thread)
    await eventually(total(1))
    await server.remove_bot_from_guild(world.guild)
    await eventually(total(0))


async def private_answer(interaction: Interaction) -> str:
    """The interaction's answer, shown to the asker alone."""
    response = await interaction.wait_for_response()
    assert response["ephemeral"] is True
    return str(response["content"])


async def test_commands_in_a_server_without_the_bot_say_it_must_be_added(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A server can keep offering the app's commands without the bot in it: added with the
    applications.commands scope alone, or the bot removed while its commands stayed. There the
    bot reads nothing, and discord.py makes the server and channel of the interaction up with
    no roles or overwrites, so no privacy check could judge them: each command, the menu too,
    tells the asker alone that the bot must be added."""
    await sync_commands(server)
    image = await server.post_message(
        world.general, world.bob, "", attachments=[png_attachment("red", "circle", 1)]
    )
    await indexed(glimpse, 1)
    await server.remove_bot_from_guild(world.guild)
    asked = [
        await server.slash_command(world.general, world.bob, "find", {"query": "a red circle"}),
        await server.slash_command(world.general, world.bob, "caption"),
        await server.context_menu(world.general, world.bob, "Caption image", int(image["id"])),
    ]
    for interaction in asked:
        assert await private_answer(interaction) == wording_commands.NOT_IN_SERVER


async def test_commands_in_a_server_in_an_outage_say_to_try_again(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Unavailable (a Discord outage), a server's channels and roles are unknown to
    discord.py, so no command could judge who may see what there."""
    await sync_commands(server)
    server.start_outage(world.guild)
    await server.flush()

    async def unavailable() -> bool:
        guild = glimpse.get_guild(world.guild)
        return guild is not None and guild.unavailable

    await eventually(unavailable)
    interaction = await server.slash_command(world.general, world.bob, "caption")
    assert await private_answer(interaction) == wording_commands.UNAVAILABLE_SERVER


async def test_a_server_that_removed_the_bot_while_it_was_away_is_forgotten(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """No GUILD_DELETE comes for a removal while the bot was stopped; the next READY lists
    every server it is in, those in an outage too, and that one is missing."""
    elsewhere = server.add_guild("elsewhere")
    lounge = server.add_channel(elsewhere, "lounge")
    data = tmp_path / "data"
    async with running(bot_settings(server, data)) as bot:
        for channel in (world.general, lounge):
            await server.post_message(channel, server.owner_id, "", attachments=[
                png_attachment("red", "circle", channel % 7)])  # fmt: skip
        await indexed(bot, 2)
        assert await bot.index.guilds() == {world.guild, elsewhere}
    await server.remove_bot_from_guild(world.guild)  # while it is stopped
    server.start_outage(elsewhere)  # and this one is only unavailable
    async with running(bot_settings(server, data)) as bot:

        async def forgotten() -> bool:
            return await bot.index.guilds() == {elsewhere}

        await eventually(forgotten)
        assert await count(bot, world.general) == 0 and await count(bot, lounge) == 1


async def test_backfill_with_index_command(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    for i in range(5):
        await server.post_message(
            world.general, world.bob, "", attachments=[png_attachment("green", "square", i)]
        )
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        assert await count(bot) == 0
        await server.post_message(world.general, world.bob, "!index")
        reply = await server.wait_for_sent(channel_id=world.general)
        assert "Manage Messages" in reply["content"]
        await server.post_message(world.general, world.alice, "!index")  # alice moderates
        progress = await server.wait_for_sent(channel_id=world.general)
        final = await server.wait_for_sent(
            lambda e: e["id"] == progress["id"] and e["content"].startswith("Done"), timeout=30
        )
        assert final["content"] == "Done: added 5 images from 9 messages."
        assert await count(bot, world.general) == 5
        dm = server.dm_channel(world.alice)  # not "you need Manage Messages": no one has it there
        await server.post_message(dm, world.alice, "!index")
        assert (await server.wait_for_sent(channel_id=dm))["content"] == wording.SERVERS_ONLY


async def test_a_second_index_while_one_runs_is_refused(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It would read the whole history again, and each would report the other's images."""
    await server.post_message(
        world.general, world.bob, "", attachments=[png_attachment("red", "circle")]
    )
    release = held(monkeypatch, history, "backfill")
    async with running(bot_settings(server, tmp_path / "data")):
        await server.post_message(world.general, world.alice, "!index")
        progress = await server.wait_for_sent(channel_id=world.general)
        second = await server.post_message(world.general, world.alice, "!index")
        assert (await reply_to(server, second))["content"] == wording_index.BACKFILL_RUNNING
        release.set()
        await server.wait_for_sent(
            lambda e: e["id"] == progress["id"] and e["content"].startswith("Done"), timeout=30
        )
        third = await server.post_message(world.general, world.alice, "!index")  # done: it may
        assert (await reply_to(server, third))["content"] == wording.BACKFILL_STARTED


async def test_a_backfill_that_outlasts_its_wait_says_it_is_still_indexing(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "Done: added 0 images" while they wait in the queue."""
    for i in range(2):
        await server.post_message(
            world.general, world.bob, "", attachments=[png_attachment("green", "square", i)]
        )
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        monkeypatch.setattr(sys.modules["cogs.indexing"], "BACKFILL_WAIT_S", 1.0)
        release = held(monkeypatch, bot.indexer, "_process")  # busy elsewhere for long
        await server.post_message(world.general, world.alice, "!index")
        progress = await server.wait_for_sent(channel_id=world.general)
        final = await server.wait_for_sent(
            lambda e: e["id"] == progress["id"] and "still being indexed" in e["content"],
            timeout=30,
        )
        release.set()
        assert final["content"] == wording_index.backfill_still_indexing(2, 4)


async def test_index_and_reposts_say_why_not_in_an_ignored_channel(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data", IGNORE_CHANNELS=str(world.other))
    async with running(settings) as bot:
        await server.post_message(world.other, world.alice, "!index")
        reply = await server.wait_for_sent(channel_id=world.other)
        assert reply["content"] == wording_index.INDEX_IGNORED
        await server.post_message(world.other, world.alice, "!reposts on")
        reply = await server.wait_for_sent(channel_id=world.other)
        assert reply["content"] == wording_index.REPOSTS_IGNORED
        assert not bot.index.checks_reposts(world.other)


@pytest.mark.parametrize("refusal", ["deleted", "edit refused"])
async def test_index_goes_on_when_its_progress_message_is_deleted(
    server: FakeDiscord,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refusal: str,
) -> None:
    """A moderator may delete the progress message, or lock the thread it is in (Discord then
    refuses its edits: threads.mdx, "Locked Threads"): the backfill still finishes, and says
    nothing more (no error)."""
    for i in range(3):
        await server.post_message(
            world.general, world.bob, "", attachments=[png_attachment("green", "square", i)]
        )
    release = held(monkeypatch, history, "backfill")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await server.post_message(world.general, world.alice, "!index")
        progress = await server.wait_for_sent(channel_id=world.general)
        if refusal == "deleted":
            await server.delete_message(world.general, int(progress["id"]))
        else:
            path = rf"^/channels/{world.general}/messages/{progress['id']}$"
            server.fail_next("PATCH", path, 403)
        sent = len(server.sent)
        release.set()
        await indexed(bot, 3)
        await asyncio.sleep(0.3)
        assert server.sent[sent:] == []


async def test_expired_urls_of_one_message_cost_one_request(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message's queued images whose URLs expired are asked for with one fetch of the
    message, not one per image."""
    release = held(monkeypatch, Indexer, "_fetch_next")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        posted = await server.post_message(world.general, world.bob, "", attachments=[
            png_attachment("green", "square", i) for i in range(3)])  # fmt: skip

        async def queued() -> bool:  # with the URLs it came with
            return len(await bot.index.pending(10)) == 3

        await eventually(queued)
        server.expire_media_urls()
        before = len(server.requests)
        release.set()
        await indexed(bot, 3)
        path = f"/channels/{world.general}/messages/{posted['id']}"
        assert [p for m, p in server.requests[before:] if m == "GET" and p == path] == [path]


async def test_cooldown_applies_per_member(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    async with running(bot_settings(server, tmp_path / "data", COOLDOWN="2/60")):
        for _ in range(2):
            await server.post_message(world.general, world.bob, "!find a red circle")
            assert "no images" in (await server.wait_for_sent(channel_id=world.general))["content"]
        await server.post_message(world.general, world.bob, "!caption")
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["content"].startswith("Slow down a little: try again in ")
        await server.post_message(world.general, world.carol, "!find a red circle")
        assert "no images" in (await server.wait_for_sent(channel_id=world.general))["content"]


async def test_a_new_search_model_never_mixes_vector_spaces(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running(bot_settings(server, data)) as bot:
        await server.post_message(
            world.general, world.bob, "", attachments=[png_attachment("red", "circle")]
        )
        await indexed(bot, 1)
    # The same weights under another id stand in for a different checkpoint.
    renamed = tmp_path / "clip-renamed"
    renamed.symlink_to(TINY_CLIP.resolve(), target_is_directory=True)
    async with running(bot_settings(server, data, SEARCH_MODEL=str(renamed))) as bot:
        await indexed(bot, 1)
        model_ids = bot.index._store._conn.execute(
            "SELECT DISTINCT model_id FROM images"
        ).fetchall()
        assert model_ids == [(str(renamed),)]


async def test_images_queued_in_a_channel_hidden_from_the_bot_wait_for_its_return(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new search model queues every image again. Those of a channel the bot cannot read
    then are not dropped: they wait, and are indexed once it can read it again."""
    monkeypatch.setattr(deferrals, "FIRST_WAIT_S", 0.3)
    data = tmp_path / "data"
    async with running(bot_settings(server, data)) as bot:
        for channel in (world.general, world.other):
            await server.post_message(
                channel, world.bob, "", attachments=[png_attachment("red", "circle")]
            )
        await indexed(bot, 2)
    hidden = [{"id": server.bot_role_id(world.guild), "type": 0, "allow": 0, "deny": VIEW_CHANNEL}]
    server.set_overwrites(world.other, hidden)
    renamed = tmp_path / "clip-renamed"
    renamed.symlink_to(TINY_CLIP.resolve(), target_is_directory=True)
    async with running(bot_settings(server, data, SEARCH_MODEL=str(renamed))) as bot:

        async def one_embedded_again() -> bool:
            return await bot.index.count() == 1

        await eventually(one_embedded_again)
        await asyncio.sleep(1.0)  # tried again meanwhile, still hidden
        assert await bot.index.pending_count() == 1
        server.set_overwrites(world.other, [])
        await server.flush()
        await indexed(bot, 2)


async def test_the_indexing_summary_counts_what_was_indexed(
    server: FakeDiscord, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.index.progress")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await server.post_message(
            world.general,
            world.alice,
            "",
            attachments=[png_attachment("red", "circle"), png_attachment("blue", "square")],
        )
        await indexed(bot, 2)
    # Stopping forces the summary line an admin reads (bot/index/progress.py).
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.index.progress"]
    assert lines[-1].startswith("indexing: 2 image(s) indexed, 0 pending")


async def test_a_channel_ignored_later_leaves_the_index_at_start(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    thread = server.add_thread(world.other, "more")
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        for channel in (world.general, world.other, thread):
            await server.post_message(channel, world.bob, "", attachments=[
                png_attachment("green", "square", channel)])  # fmt: skip
        await indexed(bot, 3)
    settings = bot_settings(server, tmp_path / "data", IGNORE_CHANNELS=str(world.other))
    async with running(settings) as bot:
        assert await count(bot) == 1 and await count(bot, world.general) == 1
