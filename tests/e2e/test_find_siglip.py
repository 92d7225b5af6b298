"""`!find` with a SigLIP search model, end to end: results show the model's probability that
the image fits the text, a low one is labelled a weak match, and switching families re-embeds."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import TINY_CLIP, TINY_SIGLIP
from tests.e2e.harness import World, bot_settings, indexed, running
from tests.e2e.test_find import ask, jump, post_shapes
from tests.fakediscord import FakeDiscord
from tests.shapes import CLASSES

TITLE = re.compile(r"#(\d+) · score (<1%|\d{1,3}%)(?P<weak> · weak match)?")


def percent(title: str) -> tuple[float, bool]:
    """The score a result's title shows, as a fraction (`<1%` as 0), and its weak label."""
    found = TITLE.fullmatch(title)
    assert found is not None, title
    score = found.group(2)
    return (0.0 if score == "<1%" else int(score[:-1]) / 100), found.group("weak") is not None


async def test_siglip_results_show_probabilities_and_say_when_nothing_fits(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    settings = bot_settings(server, tmp_path / "data", SEARCH_MODEL=str(TINY_SIGLIP))
    async with running(settings) as bot:
        posted = await post_shapes(server, world.general, [world.bob, world.carol])
        await indexed(bot, len(CLASSES))
        reply = await ask(server, world, "!find a green triangle top: 3")
        first, *rest = reply["embeds"]
        assert first["url"].endswith(jump(world, world.general, posted["a green triangle"]))
        score, weak = percent(first["title"])
        assert score >= 0.5 and not weak, first["title"]
        for embed in rest:  # other shapes: the model says they do not fit
            score, weak = percent(embed["title"])
            assert score < 0.05 and weak, embed["title"]

        await server.delete_message(world.general, posted["a green triangle"]["id"])
        await indexed(bot, len(CLASSES) - 1)
        reply = await ask(server, world, "!find a green triangle top: 3")
        assert reply["embeds"] and all(percent(e["title"])[1] for e in reply["embeds"])

        # An example image's results are cosines between pictures, whatever the family.
        await server.post_message(
            world.general, world.alice, "!find", reply_to=int(posted["a red circle"]["id"])
        )
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["embeds"], reply["content"]
        assert re.fullmatch(r"#1 · score -?\d\.\d\d.*", reply["embeds"][0]["title"])


async def test_switching_search_model_family_re_embeds_the_index(
    server: FakeDiscord, world: World, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running(bot_settings(server, data, SEARCH_MODEL=str(TINY_CLIP))) as bot:
        posted = await post_shapes(server, world.general, [world.bob])
        await indexed(bot, len(CLASSES))
        reply = await ask(server, world, "!find a blue circle")
        assert re.fullmatch(r"#1 · score \d\.\d\d", reply["embeds"][0]["title"])
    async with running(bot_settings(server, data, SEARCH_MODEL=str(TINY_SIGLIP))) as bot:
        await indexed(bot, len(CLASSES))
        rows = bot.index._store._conn.execute("SELECT DISTINCT model_id FROM images").fetchall()
        assert rows == [(str(TINY_SIGLIP),)]
        reply = await ask(server, world, "!find a blue circle")
        (embed,) = reply["embeds"]
        assert embed["url"].endswith(jump(world, world.general, posted["a blue circle"]))
        score, weak = percent(embed["title"])
        assert score >= 0.5 and not weak, embed["title"]
