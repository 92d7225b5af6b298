"""What `!caption` takes as its prompt from the words typed after it: links go, with the
markdown around them, so that a caption never starts with stray marks."""

from __future__ import annotations

import pytest

from bot.chat.captions import without_links

LINK = "https://example.com/a.png"


@pytest.mark.parametrize(
    ("typed", "prompt"),
    [
        (f"{LINK}", ""),
        (f"a green {LINK}", "a green"),
        (f"||{LINK}||", ""),
        (f"|| {LINK} ||", ""),
        (f"||a green {LINK}||", "a green"),
        (f"a green ||{LINK}||", "a green"),
        (f"({LINK})", ""),
        (f"[a cat]({LINK})", "a cat"),
        (f"*{LINK}*", ""),
        (f"**{LINK}**", ""),
        (f"`{LINK}`", ""),
        (f"<{LINK}>", ""),
        (f"see {LINK}.", "see"),
        ("a cat_with_underscores and a **bold** dog", "a cat_with_underscores and a **bold** dog"),
    ],
)
def test_links_go_with_their_markdown(typed: str, prompt: str) -> None:
    assert without_links(typed).strip() == prompt
