"""Issue 15, item 1: `!find` and `/find` by an example image, through the real client."""

from __future__ import annotations

from typing import Any

import pytest

from bot import wording
from bot.chat import search
from bot.chat.client import Glimpse
from tests.e2e.harness import World, indexed, mentions_disabled, reply_to, shape_png, sync_commands
from tests.e2e.test_real_discord import command, image, settled
from tests.fakediscord import FakeDiscord, Upload
from tests.shapes import CLASSES


async def post_shapes(server: FakeDiscord, channel: int, author: int) -> dict[str, dict]:
    """One message per class (seed 0), keyed "colour shape"."""
    posted = {}
    for colour, shape in CLASSES:
        upload = image(f"{colour}-{shape}.png", colour, shape)
        posted[f"{colour} {shape}"] = await server.post_message(channel, author, "",
                                                                attachments=[upload])  # fmt: skip
    return posted


def ids(reply: dict) -> list[str]:
    """The message ids the results link to, best first."""
    return [embed["url"].split("?")[0].rsplit("/", 1)[-1] for embed in reply["embeds"]]


async def test_an_attached_image_finds_images_like_it_but_never_itself(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    posted = await post_shapes(server, world.general, world.bob)
    other_draw = await server.post_message(world.general, world.carol, "", attachments=[
        image("again.png", "red", "circle", seed=5)])  # fmt: skip
    await settled(server, glimpse, 13)
    # The very file bob posted: his post is an identical file, so only the other draw is shown
    # among the red circles; the command's own attachment never is.
    ask = await server.post_message(world.general, world.alice, "!find top: 3",
                                    attachments=[image("mine.png", "red", "circle")])  # fmt: skip
    reply = await reply_to(server, ask)
    found = ids(reply)
    assert len(found) == 3 and mentions_disabled(reply)
    assert found[0] == other_draw["id"]
    assert posted["red circle"]["id"] not in found and ask["id"] not in found
    title = reply["embeds"][0]["title"]
    assert title.startswith("#1 · score 0.") and "alt text" not in title  # a cosine, as for text
    assert reply["embeds"][0]["image"]["url"]  # shown as for a text query


async def test_a_reply_to_an_image_finds_images_like_it(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    posted = await post_shapes(server, world.general, world.bob)
    later = await server.post_message(world.general, world.carol, "", attachments=[
        image("b.png", "blue", "square", seed=3)])  # fmt: skip
    await settled(server, glimpse, 13)
    reply = await command(server, world.general, world.alice, "!find",
                          reply_to=int(later["id"]))  # fmt: skip
    assert ids(reply) == [posted["blue square"]["id"]]  # the replied-to image itself is left out
    # A file that is no image, attached as well, counts only when no image does.
    reply = await command(server, world.general, world.alice, "!find",
                          reply_to=int(later["id"]),
                          attachments=[("notes.txt", b"hello", "text/plain")])  # fmt: skip
    assert ids(reply) == [posted["blue square"]["id"]]


async def test_words_win_over_an_attached_image(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    posted = await post_shapes(server, world.general, world.bob)
    await settled(server, glimpse, 12)
    reply = await command(server, world.general, world.alice, "!find a green square",
                          attachments=[image("x.png", "red", "circle", seed=7)])  # fmt: skip
    assert ids(reply)[0] == posted["green square"]["id"]


async def test_no_words_and_no_image_get_a_clear_answer(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await post_shapes(server, world.general, world.bob)
    await settled(server, glimpse, 12)
    for text in ("!find", "!find top: 3"):
        reply = await command(server, world.general, world.alice, text)
        assert reply["content"] == wording.search_unreadable(wording.QUERY_MISSING)
    words = await server.post_message(world.general, world.carol, "just words")
    reply = await command(server, world.general, world.alice, "!find",
                          reply_to=int(words["id"]))  # fmt: skip
    assert reply["content"] == wording.search_unreadable(wording.QUERY_MISSING)
    reply = await command(server, world.general, world.alice, "!find",
                          attachments=[("notes.txt", b"hello", "text/plain")])  # fmt: skip
    assert reply["content"].startswith("I can't use that image: ")
    await sync_commands(server)
    it = await server.slash_command(world.general, world.alice, "find", {})
    response = await it.wait_for_response(timeout=30)
    assert response["content"] == wording.search_unreadable(wording.QUERY_MISSING_SLASH)
    assert response["ephemeral"] is True


async def test_slash_find_takes_an_image_option(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    posted = await post_shapes(server, world.general, world.bob)
    await settled(server, glimpse, 12)
    await sync_commands(server)
    (find,) = [c for (name, _), c in server.commands[None].items() if name == "find"]
    options = {o["name"]: o for o in find["options"]}
    assert options["image"]["type"] == 11 and not options["image"].get("required")
    assert not options["query"].get("required")
    png = shape_png("yellow", "triangle", seed=4)
    it = await server.slash_command(world.general, world.alice, "find", {"top": 2},
                                    attachments=[("y.png", png, "image/png")])  # fmt: skip
    response = await it.wait_for_response(timeout=30)
    assert ids(response)[0] == posted["yellow triangle"]["id"] and len(ids(response)) == 2


async def test_server_scope_by_example_keeps_other_channels_to_the_asker(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    here = await server.post_message(world.general, world.bob, "", attachments=[
        image("g.png", "green", "circle", seed=1)])  # fmt: skip
    hidden = await server.post_message(world.hidden, world.alice, "", attachments=[
        Upload("SPOILER_h.png", shape_png("green", "circle", seed=2), "image/png")])  # fmt: skip
    await settled(server, glimpse, 2)
    reply = await command(server, world.general, world.alice, "!find top: 5 scope: server",
                          attachments=[image("q.png", "green", "circle", seed=3)])  # fmt: skip
    assert ids(reply) == [here["id"]] and reply["content"] == wording.SENT_BY_DM
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.alice), timeout=30)
    assert set(ids(dm)) == {here["id"], hidden["id"]}
    covered = next(e for e in dm["embeds"] if e["url"].endswith(hidden["id"]))
    assert "image" not in covered and "(spoiler)" in covered["title"]  # never uncovered


async def test_only_the_example_itself_is_indexed_here(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    first = await server.post_message(world.other, world.bob, "", attachments=[
        image("o.png", "blue", "circle")])  # fmt: skip
    await indexed(glimpse, 1)
    reply = await command(server, world.other, world.alice, "!find",
                          reply_to=int(first["id"]))  # fmt: skip
    assert reply["content"] == wording.NO_OTHER_IMAGES and not reply["embeds"]


async def test_images_like_an_example_are_never_called_weak_matches(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """WEAK_MATCH_BELOW is on the scale of a text's score; two pictures' cosine is not, so the
    label would say nothing about them."""
    await post_shapes(server, world.general, world.bob)
    await settled(server, glimpse, 12)
    example = image("mine.png", "red", "circle", seed=7)
    ask = await server.post_message(
        world.general, world.alice, "!find top: 10", attachments=[example]
    )
    reply = await reply_to(server, ask)
    titles = [embed["title"] for embed in reply["embeds"]]
    assert len(titles) == 10 and not [t for t in titles if "weak match" in t]


async def test_an_example_indexed_only_where_the_asker_cannot_read_is_embedded_anew(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reusing the stored embedding of an identical file answers sooner: only files in the
    asker's scope are reused, so the answer's time tells nothing of other channels (or
    servers) that hold the file."""
    embedded: list[int] = []
    real = search.embed_frames

    async def counting(*args: Any) -> Any:
        embedded.append(1)
        return await real(*args)

    monkeypatch.setattr(search, "embed_frames", counting)
    await server.post_message(world.hidden, world.alice, "", attachments=[
        image("secret.png", "red", "circle")])  # fmt: skip
    await settled(server, glimpse, 1)
    example = image("same.png", "red", "circle")  # the very same bytes
    reply = await command(server, world.general, world.bob, "!find", attachments=[example])
    assert reply["embeds"] == [] and embedded == [1]
    reply = await command(server, world.hidden, world.alice, "!find", attachments=[example])
    assert reply["content"] == wording.NO_OTHER_IMAGES and embedded == [1]  # reused there
