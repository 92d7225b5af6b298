"""Issue 15, items 3 and 4 through the real client: alt text in `find` and `caption`, and
animations judged by more than their first frame."""

from __future__ import annotations

import sqlite3

from bot.chat.client import Glimpse
from tests.animations import gif_with_a_blank_start
from tests.e2e.harness import World, eventually, shape_png
from tests.e2e.test_real_discord import command, image, settled
from tests.fakediscord import FakeDiscord, Upload
from tests.shapes import CLASSES


def ids(reply: dict) -> list[str]:
    return [embed["url"].split("?")[0].rsplit("/", 1)[-1] for embed in reply["embeds"]]


async def alt_text_is(bot: Glimpse, message: dict, text: str) -> None:
    """Waits until the index holds `text` as the message's alt text (read from its file)."""
    path = bot.settings.data_dir / "index.sqlite3"

    async def stored() -> bool:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT alt_text FROM images WHERE message_id = ?", (int(message["id"]),)
            ).fetchone()
        finally:
            conn.close()
        return row == (text,)

    await eventually(stored)


def described(name: str, colour: str, shape: str, alt: str, spoiler: bool = False) -> Upload:
    return Upload(name, shape_png(colour, shape), "image/png", description=alt, spoiler=spoiler)


async def test_an_alt_text_that_says_the_query_ranks_first_and_follows_edits(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    told = await server.post_message(world.general, world.bob, "", attachments=[
        described("b.png", "blue", "square", "A red circle, honestly.")])  # fmt: skip
    red = await server.post_message(world.general, world.carol, "", attachments=[
        image("r.png", "red", "circle")])  # fmt: skip
    unrelated = await server.post_message(world.general, world.carol, "", attachments=[
        described("t.png", "red", "triangle", "a yellow square")])  # fmt: skip
    await settled(server, glimpse, 3)
    reply = await command(server, world.general, world.alice, "!find a red circle top: 3")
    assert ids(reply) == [told["id"], red["id"], unrelated["id"]]
    titles = [embed["title"] for embed in reply["embeds"]]
    assert "· alt text" in titles[0] and all("alt text" not in t for t in titles[1:])
    # The poster edits the alt text: it no longer says so, and the picture decides again.
    change = {int(told["attachments"][0]["id"]): {"description": "my blue box"}}
    await server.edit_message(world.general, int(told["id"]), attachment_changes=change)
    await alt_text_is(glimpse, told, "my blue box")
    reply = await command(server, world.general, world.alice, "!find a red circle top: 3")
    assert ids(reply)[0] == red["id"] and "alt text" not in reply["embeds"][0]["title"]
    change = {int(unrelated["attachments"][0]["id"]): {"description": "circles, red"}}
    await server.edit_message(world.general, int(unrelated["id"]), attachment_changes=change)
    await alt_text_is(glimpse, unrelated, "circles, red")
    reply = await command(server, world.general, world.alice, "!find a red circle top: 3")
    assert ids(reply) == [unrelated["id"], red["id"], told["id"]]


async def test_caption_adds_the_alt_text_when_it_says_something_else(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    reply = await command(server, world.general, world.bob, "!caption", attachments=[
        described("a.png", "red", "circle", "my *ball*\nin the garden")])  # fmt: skip
    assert reply["content"] == "a red circle\n-# alt text: my \\*ball\\* in the garden"
    reply = await command(server, world.general, world.bob, "!caption", attachments=[
        described("b.png", "red", "circle", "A red circle.")])  # fmt: skip
    assert reply["content"] == "a red circle"
    reply = await command(server, world.general, world.bob, "!caption", attachments=[
        described("c.png", "blue", "square", "my box", spoiler=True),
        image("d.png", "green", "triangle")])  # fmt: skip
    assert reply["content"] == "1. ||a blue square||\n-# alt text: ||my box||\n2. a green triangle"


async def test_an_animation_is_captioned_past_its_blank_start(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    data, first, _ = gif_with_a_blank_start()
    reply = await command(server, world.general, world.bob, "!caption",
                          attachments=[("a.gif", data, "image/gif")])  # fmt: skip
    assert reply["content"] == first


async def test_an_animation_is_found_by_a_later_frame(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    data, _, later = gif_with_a_blank_start()
    gif = await server.post_message(world.general, world.bob, "",
                                    attachments=[("a.gif", data, "image/gif")])  # fmt: skip
    stills = [(c, s) for c, s in CLASSES if f"a {c} {s}" != later]
    for colour, shape in stills:
        await server.post_message(world.general, world.carol, "", attachments=[
            image(f"{colour}-{shape}.png", colour, shape, seed=3)])  # fmt: skip
    await settled(server, glimpse, 1 + len(stills))
    reply = await command(server, world.general, world.alice, f"!find {later}")
    assert ids(reply) == [gif["id"]]
