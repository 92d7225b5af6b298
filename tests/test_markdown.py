"""Text the bot repeats reads as typed: no masked link, heading, quote, list, mention-like tag
or formatting comes through, links still work, and nothing ends a spoiler cover early."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.markdown import as_typed, spoiler


def test_every_masked_link_is_broken_not_only_the_first() -> None:
    text = as_typed("[a](https://b.co) [Verify here](https://evil.example)")
    assert text == r"\[a\](https://b.co) \[Verify here\](https://evil.example)"


def test_formatting_and_tags_show_as_typed() -> None:
    assert as_typed("my *ball* in the _garden_") == r"my \*ball\* in the \_garden\_"
    assert as_typed("~~no~~ `code` <@123> <t:1:R>") == r"\~\~no\~\~ \`code\` \<@123\> \<t:1:R\>"


def test_what_formats_a_line_from_its_start_is_escaped() -> None:
    assert [as_typed(t) for t in ("# big", "> quote", "- item", "-# small", "1. first")] == [
        r"\# big",
        r"\> quote",
        r"\- item",
        r"\-# small",
        r"1\. first",
    ]
    assert as_typed("a t-shirt, 2 cats #1") == "a t-shirt, 2 cats #1"  # only at the start


def test_links_keep_working() -> None:
    assert as_typed("see https://a.co/x_y*z now") == "see https://a.co/x_y*z now"


def test_a_pipe_is_escaped_once_under_a_spoiler_cover() -> None:
    assert spoiler("cats | dogs") == r"||cats \| dogs||"
    assert spoiler("https://a.co/x\\") == "||https://a.co/x\\\\||"


@given(st.text(alphabet=st.sampled_from("ab|\\*_[]()<>#:/. -\n"), max_size=40))
def test_no_text_ends_a_spoiler_cover_early(text: str) -> None:
    inner = spoiler(text)[2:-2]
    # Read as the renderer does, escapes from the left: no bare `|` is left inside, and no
    # backslash is left over to escape the closing cover.
    bare = re.sub(r"\\.", "", inner, flags=re.DOTALL)
    assert "|" not in bare and "\\" not in bare
