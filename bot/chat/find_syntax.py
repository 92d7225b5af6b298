"""The syntax of `!find`: a query, then optional `top: N` and `scope: channel|server`.

`top:` and `scope:` count only as whole words after the query; a query in quotes (straight or
curly) is taken verbatim, so `!find "a stop: sign"` looks for exactly that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Scope = Literal["channel", "server"]
MAX_TOP = 10
_QUOTES = {'"': '"', "“": "”", "”": "”", "„": "“", "«": "»", "'": "'", "‘": "’"}
_FLAG = re.compile(r"^(top|scope):(.*)$", re.IGNORECASE)


class FindSyntaxError(ValueError):
    """The message says what to type instead."""


@dataclass(frozen=True)
class FindRequest:
    query: str
    top: int = 1
    scope: Scope = "channel"


def parse_find(text: str) -> FindRequest:
    text = text.strip()
    if text[:1] in _QUOTES:
        closing = text.find(_QUOTES[text[0]], 1)
        if closing == -1:
            raise FindSyntaxError("the query's closing quote is missing")
        query, flags = text[1:closing], text[closing + 1 :].split()
        options = _parse_flags(flags)
    else:
        words = text.split()
        start = _flags_start(words)
        query, options = " ".join(words[:start]), _parse_flags(words[start:])
    if not query.strip():
        raise FindSyntaxError('say what to look for, e.g. `find "a photo of parrots"`')
    top, scope = options
    return FindRequest(query, top, scope)


def make_request(query: str, top: int = 1, scope: str = "channel") -> FindRequest:
    """The slash command's already separated options, checked the same way."""
    query = query.strip()
    if len(query) >= 2 and query[0] in _QUOTES and query[-1] == _QUOTES[query[0]]:
        query = query[1:-1]
    if not query.strip():
        raise FindSyntaxError("say what to look for")
    return FindRequest(query, _top(str(top)), _scope(scope))


def _flags_start(words: list[str]) -> int:
    """Where the trailing run of `name: value` flags begins (len(words) when there is none)."""
    for start in range(len(words)):
        if _is_flag_run(words[start:]):
            return start
    return len(words)


def _is_flag_run(words: list[str]) -> bool:
    i = 0
    while i < len(words):
        match = _FLAG.match(words[i])
        if not match:
            return False
        i += 1 if match.group(2) else 2
    return i >= len(words)  # a trailing `top:` without its value is still a flag, and an error


def _parse_flags(words: list[str]) -> tuple[int, Scope]:
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        match = _FLAG.match(words[i])
        if not match:
            raise FindSyntaxError(
                f"I don't understand {words[i]!r}: after the query, use `top: 3` or "
                "`scope: server` (put the query in quotes if it contains such words)"
            )
        name, value = match.group(1).lower(), match.group(2)
        if not value:
            i += 1
            if i == len(words):
                raise FindSyntaxError(f"`{name}:` needs a value")
            value = words[i]
        if name in options:
            raise FindSyntaxError(f"`{name}:` is given twice")
        options[name] = value
        i += 1
    return _top(options.get("top", "1")), _scope(options.get("scope", "channel"))


def _top(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_TOP:
        raise FindSyntaxError(f"`top:` must be a number from 1 to {MAX_TOP}")
    return int(value)


def _scope(value: str) -> Scope:
    scope = value.lower()
    if scope == "channel":
        return "channel"
    if scope == "server":
        return "server"
    raise FindSyntaxError("`scope:` must be `channel` or `server`")
