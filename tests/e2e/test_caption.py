"""`!caption`, `/caption` and the context menu, through the real client and the local server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bot import wording
from bot.chat import captions as captions_module
from bot.chat.client import Glimpse
from bot.errors import UserError
from bot.images.fetcher import ImageSource
from bot.vision.scheduler import Busy
from tests.e2e.harness import (
    World,
    bot_settings,
    eventually,
    held,
    mentions_disabled,
    posts_tried,
    reply_to,
    running,
    shape_png,
    sync_commands,
)
from tests.fakediscord import READ_MESSAGE_HISTORY, SEND_MESSAGES, FakeDiscord


async def test_caption_an_attached_image(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    command = await server.post_message(
        world.general,
        world.alice,
        "!caption",
        attachments=[("shape.png", shape_png("red", "square"), "image/png")],
    )
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "a red square"
    assert reply["message_reference"]["message_id"] == command["id"]
    assert mentions_disabled(reply)
    assert world.general in server.typing


async def test_images_a_full_queue_refuses_leave_the_others_answered(
    server: FakeDiscord, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two images and room for one: the one admitted is captioned, not thrown away with the
    refusal of the other."""
    files = [(f"{c}.png", shape_png(c, "square"), "image/png") for c in ("red", "blue")]
    async with running(bot_settings(server, tmp_path / "data", MAX_PENDING="1")) as bot:
        release = held(monkeypatch, bot.vision.scheduler, "_loop")  # the first waits in line
        refused = asyncio.Event()
        caption = bot.vision.caption

        async def noting_refusals(*args: Any, **kwargs: Any) -> str:
            try:
                return await caption(*args, **kwargs)
            except Busy:
                refused.set()
                raise

        monkeypatch.setattr(bot.vision, "caption", noting_refusals)
        await server.post_message(world.general, world.bob, "!caption", attachments=files)
        await asyncio.wait_for(refused.wait(), 10)
        release.set()
        reply = await server.wait_for_sent(channel_id=world.general)
        lines = reply["content"].splitlines()
        assert len(lines) == 2
        assert sum(line.endswith(wording.BUSY) for line in lines) == 1
        assert {"1. a red square", "2. a blue square"} & set(lines)


async def test_a_capitalised_command_is_the_same_command(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Phones capitalise a message's first word."""
    await server.post_message(world.general, world.alice, "!Caption", attachments=[
        ("s.png", shape_png("blue", "square"), "image/png")])  # fmt: skip
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "a blue square"


async def test_several_images_are_numbered_and_extra_ones_skipped(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    shapes = [
        ("red", "circle"),
        ("green", "square"),
        ("blue", "triangle"),
        ("yellow", "circle"),
        ("red", "triangle"),
    ]
    files = [(f"{c}-{s}.png", shape_png(c, s), "image/png") for c, s in shapes]
    await server.post_message(world.general, world.bob, "!caption", attachments=files[:2])
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "1. a red circle\n2. a green square"
    await server.post_message(world.general, world.bob, "!caption", attachments=files)
    reply = await server.wait_for_sent(channel_id=world.general)
    lines = reply["content"].splitlines()
    assert lines[:4] == [
        "1. a red circle",
        "2. a green square",
        "3. a blue triangle",
        "4. a yellow circle",
    ]
    assert "1 more image skipped" in lines[4]
    # A file that is not an image, first among four images, takes none of their places, and
    # is not counted among the images skipped.
    notes = ("notes.txt", b"a bug report's log", "text/plain")
    await server.post_message(world.general, world.bob, "!caption", attachments=[notes, *files[:4]])
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "\n".join(lines[:4])
    await server.post_message(world.general, world.bob, "!caption", attachments=[notes, *files])
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"].splitlines() == lines


def recorded_prompts(glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The prompts handed to the captioner from now on: the tiny model's tokenizer knows no
    quote marks or bars, so a caption alone cannot show whether they were dropped."""
    prompts: list[str | None] = []
    caption = glimpse.captions.caption

    async def recorded(sources: Sequence[ImageSource], prompt: str | None, note: str = "") -> str:
        prompts.append(prompt)
        return await caption(sources, prompt, note)

    monkeypatch.setattr(glimpse.captions, "caption", recorded)
    return prompts


async def test_reply_latest_and_prompt(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = await server.post_message(
        world.general,
        world.bob,
        "look",
        attachments=[("t.png", shape_png("yellow", "triangle"), "image/png")],
    )
    await server.post_message(world.general, world.alice, "nice")
    await server.post_message(world.general, world.alice, "!caption", reply_to=int(target["id"]))
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "a yellow triangle"
    # A file of the command's that is not an image counts only when no image does.
    await server.post_message(world.general, world.alice, "!caption", reply_to=int(target["id"]),
                              attachments=[("log.txt", b"a log", "text/plain")])  # fmt: skip
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "a yellow triangle"

    # A reply to a message with no file at all is a command with no image at all: the latest.
    chat = await server.post_message(world.general, world.bob, "nice indeed")
    await server.post_message(world.general, world.alice, "!caption", reply_to=int(chat["id"]))
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"].splitlines()[0] == "a yellow triangle"
    # A replied-to file that is not an image hears why, as one attached to the command does.
    pdf = ("notes.pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\n", "application/pdf")
    report = await server.post_message(world.general, world.bob, "", attachments=[pdf])
    await server.post_message(world.general, world.alice, "!caption", reply_to=int(report["id"]))
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"].startswith("I can't use that image:") and "PDF" in reply["content"]

    await server.post_message(world.general, world.alice, "!caption")
    reply = await server.wait_for_sent(channel_id=world.general)
    first, link = reply["content"].split("\n")
    assert first == "a yellow triangle" and link.endswith(f"/{world.general}/{target['id']}")

    # Quoted as `!find "..."` is: the tiny model's tokenizer knows no quote marks, so the
    # words the model is given are checked, not only its caption.
    prompts = recorded_prompts(glimpse, monkeypatch)
    for typed in ("a blue", '"a blue"', "“a blue”"):
        await server.post_message(
            world.general,
            world.alice,
            f"!caption {typed}",
            attachments=[("b.png", shape_png("blue", "circle"), "image/png")],
        )
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["content"] == "a blue circle", typed
    assert prompts == ["a blue"] * 3


async def test_no_image_at_all_says_how(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await server.post_message(world.other, world.alice, "!caption")
    reply = await server.wait_for_sent(channel_id=world.other)
    assert "no image" in reply["content"] and "attach" in reply["content"]


async def test_slash_caption_and_context_menu(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    await sync_commands(server)
    interaction = await server.slash_command(
        world.general,
        world.bob,
        "caption",
        attachments=[("g.png", shape_png("green", "circle"), "image/png")],
    )
    response = await interaction.wait_for_response()
    assert response["content"] == "a green circle"
    assert interaction.response_type == 5  # deferred: "thinking" while the model works

    target = await server.post_message(
        world.general,
        world.carol,
        "",
        attachments=[("r.png", shape_png("red", "circle"), "image/png")],
    )
    interaction = await server.context_menu(
        world.general, world.alice, "Caption image", int(target["id"])
    )
    response = await interaction.wait_for_response()
    assert response["content"].splitlines()[0] == "a red circle"

    interaction = await server.slash_command(world.general, world.bob, "caption")
    response = await interaction.wait_for_response()
    assert response["content"].splitlines()[0] == "a red circle"  # the latest image


async def test_a_thinking_message_deleted_meanwhile_still_gets_its_answer(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moderator deletes the public "thinking" message while the caption is made: editing
    it is then refused (404, Unknown Message), and the caption comes as a message of its own."""
    release = held(monkeypatch, glimpse.captions, "caption")
    await sync_commands(server)
    picture = ("g.png", shape_png("green", "circle"), "image/png")
    slash = await server.slash_command(world.general, world.bob, "caption", attachments=[picture])

    async def thinking() -> bool:
        return slash.original is not None

    await eventually(thinking)
    assert slash.original is not None
    await server.delete_message(world.general, int(slash.original["id"]))
    release.set()
    answer = await slash.wait_for_response(predicate=lambda e: e["content"] == "a green circle")
    assert int(answer["id"]) in server.messages[world.general]


async def test_a_refusal_after_thinking_is_the_askers_alone(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/caption and the menu think in public; a refusal that comes after that is private, and
    the public "thinking" message goes (a followup would only fill it, and stay public:
    tests/test_fakediscord_fidelity.py)."""

    async def refuse(*args: object, **kwargs: object) -> str:
        raise UserError("the models are being updated")

    monkeypatch.setattr(glimpse.captions, "caption", refuse)
    await sync_commands(server)
    picture = ("g.png", shape_png("green", "circle"), "image/png")
    slash = await server.slash_command(world.general, world.bob, "caption", attachments=[picture])
    target = await server.post_message(world.general, world.carol, "", attachments=[picture])
    menu = await server.context_menu(world.general, world.bob, "Caption image", int(target["id"]))
    for it in (slash, menu):
        answer = await it.wait_for_response()
        assert answer["content"] == "the models are being updated" and answer["ephemeral"]
        assert it.response_type == 5  # it had deferred in public first
        public = server.messages[world.general].values()
        assert not [
            m for m in public if (m.get("interaction_metadata") or {}).get("id") == str(it.id)
        ]


async def test_an_image_link_is_captioned_once_discord_previews_it(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discord previews a link after the message arrives; `!caption LINK` waits for that
    preview, and neither captions the channel's latest image nor takes the link as words."""
    monkeypatch.setattr(captions_module, "PREVIEW_WAIT_S", 1.0)
    server.preview_delay = 0.3
    server.host_on_web("https://example.com/g.png", shape_png("green", "circle"))
    await server.post_message(world.general, world.bob, "", attachments=[
        ("r.png", shape_png("red", "square"), "image/png")])  # fmt: skip
    await server.post_message(world.general, world.alice, "!caption https://example.com/g.png")
    reply = await server.wait_for_sent(channel_id=world.general)
    assert reply["content"] == "a green circle"
    for link in ("<https://example.com/g.png>", "https://example.com/nothing-there"):
        await server.post_message(world.general, world.alice, f"!caption {link}")
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["content"] == wording.NO_PREVIEW


async def test_the_marks_around_a_link_are_not_taken_as_words(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spoiler bars or brackets around a link belong to it: they were fed to the model as the
    caption's first words ("||circle||" for a green circle)."""
    monkeypatch.setattr(captions_module, "PREVIEW_WAIT_S", 1.0)
    server.preview_delay = 0.1
    server.host_on_web("https://example.com/g.png", shape_png("green", "circle"))
    for typed, caption in [
        ("||https://example.com/g.png||", "||a green circle||"),
        ("a green ||https://example.com/g.png||", "||a green circle||"),
        ("(https://example.com/g.png)", "a green circle"),
        ("a green (https://example.com/g.png)", "a green circle"),
    ]:
        await server.post_message(world.general, world.alice, f"!caption {typed}")
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["content"] == caption, typed


async def test_a_slash_prompt_s_link_is_refused_and_its_marks_are_not_words(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An option's link is never previewed, so `/caption` with one and no image has nothing to
    caption: not the channel's latest image with the link as words. Spoiler bars are markup,
    never the caption's words, as on `!caption`."""
    await sync_commands(server)
    await server.post_message(world.general, world.bob, "", attachments=[
        ("r.png", shape_png("red", "square"), "image/png")])  # fmt: skip
    link = {"prompt": "https://example.com/g.png"}
    it = await server.slash_command(world.general, world.alice, "caption", link)
    assert (await it.wait_for_response())["content"] == wording.NO_PREVIEW
    picture = ("g.png", shape_png("green", "circle"), "image/png")
    bars = {"prompt": "||a green||"}
    prompts = recorded_prompts(glimpse, monkeypatch)
    it = await server.slash_command(
        world.general, world.alice, "caption", bars, attachments=[picture]
    )
    assert (await it.wait_for_response())["content"] == "a green circle"
    assert prompts == ["a green"]


async def test_in_a_thread_started_from_an_image_that_image_is_the_latest(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """A thread's first message only points to the message it was started from (type 21,
    no attachments): `!caption` there means that message's image, until it is deleted."""
    await server.post_message(world.general, world.bob, "", attachments=[
        ("older.png", shape_png("red", "square"), "image/png")])  # fmt: skip
    posted = await server.post_message(world.general, world.bob, "look", attachments=[
        ("g.png", shape_png("green", "circle"), "image/png")])  # fmt: skip
    thread = await server.start_thread_from_message(
        world.general, int(posted["id"]), world.alice, "about this"
    )
    link = f"https://discord.com/channels/{world.guild}/{world.general}/{posted['id']}"

    async def caption_in_thread() -> str:
        command = await server.post_message(thread, world.alice, "!caption")
        return str((await reply_to(server, command))["content"])

    assert await caption_in_thread() == "a green circle" + wording.latest_image_note(link)
    await sync_commands(server)  # and the menu on that first message means that image too
    it = await server.context_menu(thread, world.alice, "Caption image", thread)
    answer = await it.wait_for_response()
    assert answer["content"] == "a green circle" + wording.menu_source_note(link)
    await server.delete_message(world.general, int(posted["id"]))
    assert await caption_in_thread() == wording.no_image(captions_module.LOOKBACK)


async def test_the_menu_on_a_thread_start_the_bot_may_not_read_says_so(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """The menu works where the bot cannot read; the message a thread was started from must
    then be fetched, and Discord refuses (403): that is not a message without an image."""
    posted = await server.post_message(world.general, world.bob, "look", attachments=[
        ("g.png", shape_png("green", "circle"), "image/png")])  # fmt: skip
    thread = await server.start_thread_from_message(
        world.general, int(posted["id"]), world.alice, "about this"
    )
    bot_role = server.bot_role_id(world.guild)
    server.set_overwrites(world.general, [{"id": bot_role, "type": 0, "allow": 0,
                                           "deny": READ_MESSAGE_HISTORY}])  # fmt: skip
    await sync_commands(server)
    it = await server.context_menu(thread, world.alice, "Caption image", thread)
    answer = await it.wait_for_response()
    assert answer["content"] == wording.BOT_CANNOT_READ_THREAD_START and answer["ephemeral"]


async def test_the_menu_on_a_message_without_an_image_says_so(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """The menu names one message: its refusal speaks of that message, and a file that is not
    an image hears why, as with `!caption`."""
    await sync_commands(server)
    words = await server.post_message(world.general, world.carol, "just words")
    pdf = await server.post_message(world.general, world.carol, "", attachments=[
        ("notes.pdf", b"%PDF-1.4 not an image", "application/pdf")])  # fmt: skip
    it = await server.context_menu(world.general, world.bob, "Caption image", int(words["id"]))
    answer = await it.wait_for_response()
    assert answer["content"] == wording.NO_IMAGE_IN_MESSAGE and answer["ephemeral"]
    it = await server.context_menu(world.general, world.bob, "Caption image", int(pdf["id"]))
    answer = await it.wait_for_response()
    assert "PDF" in answer["content"] and answer["ephemeral"]


async def test_caption_in_a_dm(server: FakeDiscord, world: World, glimpse: Glimpse) -> None:
    dm = server.dm_channel(world.carol)
    await server.post_message(
        dm,
        world.carol,
        "!caption",
        attachments=[("x.png", shape_png("blue", "square"), "image/png")],
    )
    reply = await server.wait_for_sent(channel_id=dm)
    assert reply["content"] == "a blue square"


async def test_a_video_or_audio_attachment_is_named_without_downloading_it(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    """Discord gives an attachment's media type (message.mdx, "Attachment Object"): a video of
    up to 25 MB was downloaded only to be refused, and one without a known signature was
    'not a kind we can read'."""
    for name, kind, words in (("clip.mp4", "video/mp4", "a video"),
                              ("memo.ogg", "audio/ogg", "an audio file")):  # fmt: skip
        await server.post_message(world.general, world.bob, "!caption", attachments=[
            (name, bytes(4096), kind)])  # fmt: skip
        reply = await server.wait_for_sent(channel_id=world.general)
        assert (
            reply["content"]
            == f"I can't use that image: this is not an image (looks like {words})."
        )
    assert not [path for _, path, _ in server.media_requests if path.endswith(("mp4", "ogg"))]


async def test_bad_files_get_clear_replies_and_the_next_command_works(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    cases = [
        (("report.pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\n", "application/pdf"), "PDF"),
        (("broken.png", shape_png("red", "circle")[:200], "image/png"), "cut off"),
        (("huge.png", b"\x89PNG" + bytes(27 * 1024 * 1024), "image/png"), "limit"),
    ]
    for attachment, expected in cases:
        await server.post_message(world.general, world.bob, "!caption", attachments=[attachment])
        reply = await server.wait_for_sent(channel_id=world.general)
        assert reply["content"].startswith("I can't use that image:"), reply["content"]
        assert expected.lower() in reply["content"].lower(), reply["content"]
    await server.post_message(
        world.general,
        world.bob,
        "!caption",
        attachments=[("ok.png", shape_png("green", "triangle"), "image/png")],
    )
    assert (await server.wait_for_sent(channel_id=world.general))["content"] == "a green triangle"


async def test_fifty_concurrent_commands_from_ten_members(
    server: FakeDiscord, world: World, glimpse: Glimpse
) -> None:
    colours, shapes = ("red", "green", "blue", "yellow"), ("circle", "square", "triangle")
    members = [world.alice, world.bob, world.carol]
    for i in range(7):
        member = server.add_user(f"member{i}")
        server.add_member(world.guild, member)
        members.append(member)
    # Discord lets a bot create 5 messages per 5 s in one channel (rate-limits.mdx, per-route
    # limits keyed by channel): fifty answers in one channel take 50 s, so the fifty commands
    # come from ten channels, as a busy server's would.
    channels = [server.add_channel(world.guild, f"room{i}") for i in range(10)]
    expected: dict[str, str] = {}
    posts = []
    for i in range(50):
        colour, shape = colours[i % 4], shapes[(i // 4) % 3]
        post = server.post_message(
            channels[i % 10],
            members[i % 10],
            "!caption",
            attachments=[(f"{i}.png", shape_png(colour, shape, seed=i), "image/png")],
        )
        posts.append((post, f"a {colour} {shape}"))
    messages = await asyncio.gather(*(post for post, _ in posts))
    for message, (_, caption) in zip(messages, posts, strict=True):
        expected[message["id"]] = caption
    replies = [await server.wait_for_sent(timeout=60) for _ in range(50)]
    got = {r["message_reference"]["message_id"]: r["content"] for r in replies}
    assert got == expected


async def test_the_context_menu_answers_in_the_channel_after_the_token_expired(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = held(monkeypatch, glimpse.captions, "caption")
    await sync_commands(server)
    target = await server.post_message(
        world.general,
        world.carol,
        "",
        attachments=[("r.png", shape_png("blue", "circle"), "image/png")],
    )
    it = await server.context_menu(world.general, world.alice, "Caption image", int(target["id"]))
    await it.wait_for_callback()
    await server.advance(16 * 60)  # past the token's 15 minutes
    release.set()
    reply = await server.wait_for_sent(lambda e: e["kind"] == "message", timeout=30)
    assert int(reply["channel_id"]) == world.general and mentions_disabled(reply)
    assert reply["content"].splitlines()[0] == "a blue circle"


async def test_a_late_answer_where_the_bot_may_not_post_comes_by_dm(
    server: FakeDiscord, world: World, glimpse: Glimpse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The menu works where the bot may not post; once the token has expired, a post there
    would be refused (403, counted towards the invalid-request limit): the asker gets the
    caption by direct message instead."""
    bot_role = server.bot_role_id(world.guild)
    server.set_overwrites(world.other, [{"id": bot_role, "type": 0, "allow": 0,
                                         "deny": SEND_MESSAGES}])  # fmt: skip
    release = held(monkeypatch, glimpse.captions, "caption")
    await sync_commands(server)
    target = await server.post_message(world.other, world.carol, "", attachments=[
        ("r.png", shape_png("blue", "circle"), "image/png")])  # fmt: skip
    it = await server.context_menu(world.other, world.alice, "Caption image", int(target["id"]))
    await it.wait_for_callback()
    await server.advance(16 * 60)  # past the token's 15 minutes
    release.set()
    dm = await server.wait_for_sent(channel_id=server.dm_channel(world.alice), timeout=30)
    assert dm["content"].splitlines()[0] == "a blue circle"
    assert posts_tried(server, world.other) == 0
