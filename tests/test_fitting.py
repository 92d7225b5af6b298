"""Replies stay within Discord's 2,000 characters, whatever the captions (bot/chat/fitting.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

from bot.chat.captions import Captions
from bot.chat.fitting import CONTENT_MAX, clip, fit_lines
from bot.images.download import DownloadError
from bot.images.fetcher import ImageSource
from bot.index.refs import ImageRef

PROMPT = "a " + "very " * 379 + "red"  # 1,900 characters, as issue 12 asks


def test_clip_keeps_what_fits_and_marks_a_cut() -> None:
    assert clip("a red circle", 12) == "a red circle"
    assert clip("a red circle", 8) == "a red c…"
    assert clip("a red circle", 7) == "a red…"  # no space is left before the "…"
    assert len(clip("x" * 5000)) == CONTENT_MAX and clip("x" * 5000).endswith("…")
    assert clip("abc", 0) == ""


def test_long_lines_share_the_room_fairly() -> None:
    lines = fit_lines(["x" * 1900] * 4, 1000)
    assert [len(line) for line in lines] == [250] * 4
    assert all(line.endswith("…") for line in lines)


def test_a_short_line_is_kept_and_leaves_its_share_to_the_others() -> None:
    lines = fit_lines(["short", "y" * 900, "z" * 3000], 1005)
    assert lines[0] == "short"
    assert len(lines[1]) == len(lines[2]) == 500
    assert sum(map(len, lines)) <= 1005


def test_lines_that_fit_are_untouched() -> None:
    assert fit_lines(["a", "b"], 2) == ["a", "b"]


class EchoVision:
    """A captioner that repeats the prompt, as a large BLIP model may."""

    async def caption(self, image: object, prompt: str | None) -> str:
        return f"{prompt} circle"


class Fetcher:
    allowed_hosts = frozenset({"cdn.discordapp.com"})

    async def fetch(self, source: ImageSource) -> SimpleNamespace:
        if source.filename.startswith("broken"):
            raise DownloadError("the image is gone")
        return SimpleNamespace(image=None, digest="")


def source(n: int, filename: str | None = None, spoiler: bool = False) -> ImageSource:
    ref = ImageRef(1, 2, 3, n, 4, 0.0)
    name = filename or f"{n}.png"
    return ImageSource(ref, f"https://cdn.discordapp.com/{name}", name, 10, spoiler=spoiler)


async def test_four_long_captions_and_the_note_fit_in_one_message() -> None:
    captions = Captions(EchoVision(), Fetcher())  # type: ignore[arg-type]
    note = "\n-# captioned the latest image: https://discord.com/channels/1/2/3"
    reply = await captions.caption([source(i) for i in range(5)], PROMPT, note)
    lines = reply.split("\n")
    assert len(reply) <= CONTENT_MAX
    assert [line[:3] for line in lines[:4]] == ["1. ", "2. ", "3. ", "4. "]
    assert all(line.endswith("…") for line in lines[:4])
    assert max(map(len, lines[:4])) - min(map(len, lines[:4])) <= 2  # equal shares, cut at words
    assert lines[4] == "(1 more image skipped: at most 4 at a time.)"
    assert reply.endswith(note) and len(reply) > CONTENT_MAX - 10  # cut no more than needed


async def test_a_spoilered_caption_keeps_its_cover_when_shortened() -> None:
    captions = Captions(EchoVision(), Fetcher())  # type: ignore[arg-type]
    prompt = "a | " * 600  # every | is escaped inside the cover, so the markup grows
    reply = await captions.caption([source(1, spoiler=True), source(2)], prompt)
    first, second = reply.split("\n")
    assert len(reply) <= CONTENT_MAX
    assert re.fullmatch(r"1\. \|\|.*…\|\|", first) and second.endswith("…")


async def test_a_refusal_with_a_huge_file_name_is_shortened_too() -> None:
    captions = Captions(EchoVision(), Fetcher())  # type: ignore[arg-type]
    reply = await captions.caption([source(1, "broken" + "x" * 3000), source(2)], PROMPT)
    assert len(reply) <= CONTENT_MAX and reply.startswith("1. can't use broken")
