"""Fitting replies into Discord's limits: lines shortened fairly, each cut marked with "…"."""

from __future__ import annotations

from collections.abc import Callable, Sequence

# message.mdx, "Create Message" (JSON/form params): content up to 2000 characters.
CONTENT_MAX = 2000
ELLIPSIS = "…"


def clip(text: str, limit: int = CONTENT_MAX) -> str:
    """`text` if it fits in `limit` characters, else its start and "…" within them."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS


def fit_lines(lines: Sequence[str], room: int) -> list[str]:
    """The lines, the longest shortened until all fit in `room` characters together.

    Each line gets an equal share of the room; what a shorter line leaves unused is shared
    among the longer ones, so no line is cut more than it must be.
    """
    if sum(map(len, lines)) <= room:
        return list(lines)
    return [clip(line, share) for line, share in zip(lines, _shares(lines, room), strict=True)]


def fit_rendered(texts: Sequence[str], render: Callable[[list[str]], str]) -> str:
    """`render(texts)` within one message: the texts shortened (fit_lines) by as much as the
    markup around them leaves no room for, again while escapes that grew with the text still
    overflow."""
    room = CONTENT_MAX - len(render([""] * len(texts)))
    reply = render(fit_lines(texts, room))
    while len(reply) > CONTENT_MAX and room > 0:
        room -= len(reply) - CONTENT_MAX
        reply = render(fit_lines(texts, room))
    return reply


def _shares(lines: Sequence[str], room: int) -> list[int]:
    shares = [0] * len(lines)
    left = max(room, 0)
    by_length = sorted(range(len(lines)), key=lambda i: len(lines[i]))
    for taken, i in enumerate(by_length):
        shares[i] = min(len(lines[i]), left // (len(lines) - taken))
        left -= shares[i]
    return shares
