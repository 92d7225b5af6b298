"""`!forget` naming someone: a member, someone who has left, or nobody, end to end."""

from __future__ import annotations

from pathlib import Path

from bot import wording
from bot.chat.client import Glimpse
from tests.e2e.harness import World, bot_settings, indexed, running, shape_png
from tests.fakediscord import MANAGE_MESSAGES, FakeDiscord

NOBODY = wording.forget_nobody("!")
REFUSED = wording.permission_needed(["manage_messages"])
UNKNOWN_ID = "123456789012345678"  # a well-formed user ID that the server does not know


async def post_images(server: FakeDiscord, world: World, counts: dict[int, int]) -> None:
    """Each author posts this many images (different ones) in #general."""
    for author, count in counts.items():
        for seed in range(count):
            png = shape_png("red", "circle", seed=author * 10 + seed)
            await server.post_message(
                world.general, author, "", attachments=[(f"{seed}.png", png, "image/png")]
            )


async def ask(server: FakeDiscord, world: World, author: int, text: str) -> str:
    await server.post_message(world.general, author, text)
    reply = await server.wait_for_sent(channel_id=world.general)
    return str(reply["content"])


async def test_naming_nobody_removes_nothing_and_says_so(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await post_images(server, world, {world.alice: 2, world.carol: 1})
    await indexed(glimpse, 3)
    # alice has Manage Messages: a name nobody has, an ID nobody has, a mention with more words
    # after it (not "carol", and certainly not alice herself).
    for text in ("!forget nosuchperson", f"!forget {UNKNOWN_ID}", f"!forget <@{world.carol}> too"):
        assert await ask(server, world, world.alice, text) == NOBODY, text
        assert await glimpse.index.count() == 3, text
    assert await ask(server, world, world.alice, "!forget") == (
        "Removed 2 of your images from this server's index."
    )
    assert await ask(server, world, world.alice, '!forget "carol"') == (
        "Removed 1 image of carol's from this server's index."
    )
    # A name typed with its @ but not picked from the client's list arrives as text.
    await post_images(server, world, {world.carol: 1})
    await indexed(glimpse, 1)
    assert await ask(server, world, world.alice, "!forget @carol") == (
        "Removed 1 image of carol's from this server's index."
    )


async def test_a_moderator_forgets_someone_who_has_left(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    dave = server.add_user("dave")
    server.add_member(world.guild, dave)
    await post_images(server, world, {dave: 2, world.alice: 1})
    await indexed(glimpse, 3)
    # dave leaves. Without the privileged members intent the bot is not told (GUILD_MEMBER_REMOVE
    # needs it: gateway.mdx, "List of Intents"); the server just no longer has him.
    del server.guilds[world.guild].members[dave]

    assert await ask(server, world, world.alice, f"!forget {dave}") == (
        "Removed 2 of dave's images from this server's index."
    )
    assert await glimpse.index.count() == 1
    assert await ask(server, world, world.alice, f"!forget <@{dave}>") == (
        "Removed 0 of dave's images from this server's index."
    )
    # Someone the bot has never seen, by ID: Discord's API knows them.
    erin = server.add_user("erin")
    assert await ask(server, world, world.alice, f"!forget {erin}") == (
        "Removed 0 of erin's images from this server's index."
    )
    assert ("GET", f"/users/{erin}") in server.requests
    assert await ask(server, world, world.alice, "!forget") == (
        "Removed 1 image of yours from this server's index."
    )


async def test_a_name_two_members_go_by_forgets_neither(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """sam by username, samuel by display name: Discord lists both for "sam" (usernames that
    start so), and discord.py's converter took the first of them."""
    sam, samuel = server.add_user("sam"), server.add_user("samuel")
    server.users[samuel]["global_name"] = "sam"  # the name shown for him everywhere
    for member in (samuel, sam):
        server.add_member(world.guild, member)
    await post_images(server, world, {sam: 1, samuel: 2})
    await indexed(glimpse, 3)
    for text in ("!forget sam", '!forget "sam"', "!forget @sam"):
        assert await ask(server, world, world.alice, text) == wording.forget_ambiguous("!")
        assert await glimpse.index.count() == 3, text
    assert await ask(server, world, world.alice, "!forget samuel") == (
        "Removed 2 of sam's images from this server's index."
    )
    assert await ask(server, world, world.alice, f"!forget <@{sam}>") == (
        "Removed 1 image of sam's from this server's index."
    )
    assert await glimpse.index.count() == 0


async def test_without_manage_messages_only_your_own(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    dave = server.add_user("dave")
    server.add_member(world.guild, dave)
    await post_images(server, world, {world.bob: 2, world.carol: 1, dave: 1})
    await indexed(glimpse, 4)
    del server.guilds[world.guild].members[dave]
    asked = len(server.requests)
    for text in (
        "!forget nosuchperson",
        f"!forget {UNKNOWN_ID}",
        f"!forget <@{world.carol}>",
        "!forget carol",
        f"!forget {dave}",
        f"!forget <@{world.bob}> and carol",
        "!forget @carol",
    ):
        # The same refusal whether that person exists or not, and Discord is not asked.
        assert await ask(server, world, world.bob, text) == REFUSED, text
        assert await glimpse.index.count() == 4, text
    assert not [r for r in server.requests[asked:] if r[1].startswith("/users/")]
    assert await ask(server, world, world.bob, f"!forget <@{world.bob}>") == (
        "Removed 2 of your images from this server's index."
    )
    assert await glimpse.index.count() == 2


async def test_the_answer_names_the_configured_prefix(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    async with running(bot_settings(server, tmp_path / "data", COMMAND_PREFIX="?")):
        reply = await ask(server, world, world.alice, "?forget nosuchperson")
    assert reply == wording.forget_nobody("?") and "`?forget @member`" in reply


async def test_what_was_forgotten_stays_forgotten_when_history_is_read_again(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    """`!index` and a restart's catch-up read the channel's history again: the images `!forget`
    removed stay out, and the member's uploads after it are indexed as before."""
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await post_images(server, world, {world.carol: 1, world.bob: 2})
        await indexed(bot, 3)
        assert await ask(server, world, world.bob, "!forget") == (
            "Removed 2 of your images from this server's index."
        )
        await server.post_message(world.general, world.alice, "!index")  # alice moderates
        progress = await server.wait_for_sent(channel_id=world.general)
        await server.wait_for_sent(
            lambda e: e["id"] == progress["id"] and e["content"].startswith("Done"), timeout=30
        )
        assert await bot.index.count() == 1
    later = ("later.png", shape_png("blue", "square"), "image/png")
    await server.post_message(world.general, world.bob, "", attachments=[later])  # bot down
    async with running(bot_settings(server, tmp_path / "data")) as bot:
        await indexed(bot, 2)  # the catch-up brings the new upload only
        assert await bot.index.count() == 2 and await bot.index.pending_count() == 0


async def test_manage_messages_in_one_channel_forgets_nobody_else(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Forgetting someone reaches every channel of the server, so it takes Manage Messages for
    the server (a role's), not an overwrite that grants it in one channel."""
    await post_images(server, world, {world.carol: 2})
    await indexed(glimpse, 2)
    overwrite = {"id": world.bob, "type": 1, "allow": MANAGE_MESSAGES, "deny": 0}
    server.set_overwrites(world.general, [overwrite])
    await server.flush()
    assert server.permissions_for(world.general, world.bob) & MANAGE_MESSAGES
    refused = wording.FORGET_NEEDS_SERVER_PERMISSION
    assert await ask(server, world, world.bob, f"!forget <@{world.carol}>") == refused
    assert await ask(server, world, world.bob, "!forget carol") == refused
    assert await glimpse.index.count() == 2
    assert await ask(server, world, world.alice, f"!forget <@{world.carol}>") == (
        "Removed 2 of carol's images from this server's index."
    )


async def test_a_name_is_found_in_any_case(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Usernames are lower case; a phone capitalises the first letter typed."""
    await post_images(server, world, {world.bob: 2, world.carol: 1})
    await indexed(glimpse, 3)
    assert await ask(server, world, world.bob, "!forget Bob") == (
        "Removed 2 of your images from this server's index."
    )
    assert await ask(server, world, world.alice, "!forget CAROL") == (
        "Removed 1 image of carol's from this server's index."
    )
    assert await glimpse.index.count() == 0
