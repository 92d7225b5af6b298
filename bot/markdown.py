r"""Text the bot repeats but did not write (alt text, file names, member names, search words, a
model's caption) shown as it reads: Discord's markdown in it is escaped.

A backslash before ASCII punctuation shows it as typed (message.mdx, "Message Formatting";
Discord's markdown follows simple-markdown's escape rule). Escaped: what formats inline
(`*`, `_`, `~`, backticks, `|`), what makes a masked link or a mention-like tag (`[`, `]`,
`<`, `>`), the backslash itself, and what formats a line from its start (a heading `#`, a
quote `>`, a list `-`, `+` or `1.`, subtext `-#`). A bare link stays as it is, so that it
still works, except for `|` and `\`: no text, link or not, can end a spoiler cover early.
"""

from __future__ import annotations

import re

_INLINE = re.compile(r"([\\*_~`|\[\]<>])")
_LINK = re.compile(r"https?://[^\s<]+[^<.,:;\"')\]\s]")
_LINE_START = re.compile(r"^(\s*)([#>+-]|\d+[.)])")


def as_typed(text: str) -> str:
    parts, end = [], 0
    for link in _LINK.finditer(text):
        parts.append(_INLINE.sub(r"\\\1", text[end : link.start()]))
        parts.append(link.group().replace("\\", "\\\\").replace("|", "\\|"))
        end = link.end()
    parts.append(_INLINE.sub(r"\\\1", text[end:]))
    return _LINE_START.sub(_escape_marker, "".join(parts))


def _escape_marker(match: re.Match[str]) -> str:
    space, marker = match.groups()
    return f"{space}{marker[:-1]}\\{marker[-1]}"


def spoiler(text: str) -> str:
    """Under Discord's spoiler cover (`||...||`), escaped as `as_typed`: no `|` inside can end
    the cover early."""
    return f"||{as_typed(text)}||"
