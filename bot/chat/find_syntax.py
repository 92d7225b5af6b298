"""The syntax of `!find`: a query, then optional `top: N` and `scope: channel|server`.

`top:` and `scope:` count only as whole words after the query; a query in quotes (straight or
curly) is taken verbatim, so `!find "a stop: sign"` looks for exactly that. No query at all
(flags alone count as none) is allowed when an image may stand for it: one attached to the
command, or in the message it replies to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import discord
from discord.ext import commands

from bot import wording

Scope = Literal["channel", "server"]
MAX_TOP = 10
# Each opening quote and the ones that close it: „ closes with “ in German, ” in Polish,
# Romanian, Hungarian and Dutch.
_QUOTES = {'"': '"', "“": "”", "”": "”", "„": "“”", "«": "»", "'": "'", "‘": "’"}
# Also apostrophes (`'90s cars`, `‘tis the season`, as phones type them): a query that opens
# with one is quoted only when it closes and nothing but flags follows.
_APOSTROPHES = ("'", "‘")
_FLAG = re.compile(r"^(top|scope):(.*)$", re.IGNORECASE)


class FindSyntaxError(commands.BadArgument, ValueError):
    """The message says what to type instead; a BadArgument, so discord.py reports it as the
    command's error whether it comes from parsing the text or from the command itself."""


@dataclass(frozen=True)
class FindRequest:
    query: str  # empty: find images like an example image
    top: int = 1
    scope: Scope = "channel"


def _closing_quote(text: str) -> int:
    """Where the quote that `text` opens with closes; -1 if it opens with none or never
    closes."""
    closers = _QUOTES.get(text[:1], "")
    return next((i for i, c in enumerate(text[1:], 1) if c in closers), -1)


def parse_find(text: str, example: bool = False) -> FindRequest:
    """`example`: an image may stand for a missing query."""
    text = text.strip()
    closing = _closing_quote(text)
    rest = text[closing + 1 :].split() if closing != -1 else []
    apostrophe = text[:1] in _APOSTROPHES and (closing == -1 or _flags_start(rest) != 0)
    if text[:1] in _QUOTES and not apostrophe:
        if closing == -1:
            raise FindSyntaxError(wording.QUOTE_NOT_CLOSED)
        query, options = text[1:closing], _parse_flags(rest)
    else:
        words = text.split()
        start = _flags_start(words)
        query, options = " ".join(words[:start]), _parse_flags(words[start:])
    if not query.strip():
        if not example:
            raise FindSyntaxError(wording.QUERY_MISSING)
        query = ""
    top, scope = options
    return FindRequest(query, top, scope)


def make_request(
    query: str, top: int = 1, scope: str = "channel", example: bool = False
) -> FindRequest:
    """The slash command's already separated options, checked the same way; `example`: an
    image option was given."""
    query = unquoted(query.strip())
    if not query.strip():
        if not example:
            raise FindSyntaxError(wording.QUERY_MISSING_SLASH)
        query = ""
    return FindRequest(query, _top(str(top)), _scope(scope))


def unquoted(text: str) -> str:
    """`text` without the quotes around the whole of it, if any (straight or curly)."""
    if len(text) >= 2 and text[-1] in _QUOTES.get(text[0], ""):
        return text[1:-1]
    return text


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
            raise FindSyntaxError(wording.unknown_find_word(words[i]))
        name, value = match.group(1).lower(), match.group(2)
        if not value:
            i += 1
            if i == len(words):
                raise FindSyntaxError(wording.flag_needs_value(name))
            value = words[i]
        if name in options:
            raise FindSyntaxError(wording.flag_given_twice(name))
        options[name] = value
        i += 1
    return _top(options.get("top", "1")), _scope(options.get("scope", "channel"))


def _top(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_TOP:
        raise FindSyntaxError(wording.top_range(MAX_TOP))
    return int(value)


def _scope(value: str) -> Scope:
    scope = value.lower()
    if scope == "channel":
        return "channel"
    if scope == "server":
        return "server"
    raise FindSyntaxError(wording.SCOPE_CHOICES)


class FindOptions(commands.FlagConverter, delimiter=":", prefix=""):
    """`/find query image top scope` as slash options; the text form reads the same options
    with `parse_find`, since discord.py's flag parsing ignores quotes and word boundaries."""

    query: str = commands.flag(default="", description="what to look for, e.g. a photo of parrots")
    image: discord.Attachment | None = commands.flag(
        default=None, description="find images like this one (when there is no query)"
    )
    top: commands.Range[int, 1, MAX_TOP] = commands.flag(
        default=1, description=f"how many results (1-{MAX_TOP})"
    )
    scope: Scope = commands.flag(
        default="channel",
        description="this channel, or every channel you can read (answered privately)",
    )

    @classmethod
    async def convert(cls, ctx: commands.Context[Any], argument: str) -> FindOptions:
        """The text form: `!find "a photo of parrots" top: 3`."""
        return cls.parsed(parse_find(argument, may_show_example(ctx.message)))

    @classmethod
    def parsed(cls, request: FindRequest) -> FindOptions:
        options = cls.__new__(cls)
        options.query, options.top, options.scope = request.query, request.top, request.scope
        options.image = None  # the text form's image is the message's own, or a reply's
        vars(options)["_request"] = request  # not a flag: FlagConverter owns the annotations
        return options

    def request(self) -> FindRequest:
        """The text form's parsed request, or the slash options checked like it."""
        parsed: FindRequest | None = getattr(self, "_request", None)
        return parsed or make_request(self.query, self.top, self.scope, self.image is not None)


def may_show_example(message: discord.Message) -> bool:
    """An attachment, or a reply, may hold the image that stands for a missing query."""
    return bool(message.attachments) or message.reference is not None


def no_query(ctx: commands.Context[Any]) -> FindOptions:
    """`!find` with nothing after it: find images like an example, or say what to type."""
    return FindOptions.parsed(parse_find("", may_show_example(ctx.message)))
