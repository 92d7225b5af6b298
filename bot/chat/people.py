"""Who a command names: the whole argument as one person, found the way `forget` needs."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import discord
from discord.ext import commands

_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201c\u201d"}  # „ closes as “ or ”
_MENTION_OR_ID = re.compile(r"<@!?([0-9]{15,20})>|([0-9]{15,20})")


def unquoted(text: str) -> str:
    text = text.strip()
    if len(text) > 1 and text[-1] in _QUOTES.get(text[0], ""):
        return text[1:-1].strip()
    return text


def may_name(author: discord.abc.User, argument: str) -> bool:
    """Whether `argument` may be the asker themselves, judged without asking Discord."""
    match = _MENTION_OR_ID.fullmatch(argument)
    if match:
        return int(match.group(1) or match.group(2)) == author.id
    return argument in (author.name, author.global_name, author.display_name)


async def person_named(ctx: commands.Context[Any], argument: str) -> discord.abc.User | None:
    """The whole argument as one person: a member of this server (mention, ID or name), else
    any Discord user by mention or ID (someone who left; discord.py asks the API) or by a name
    the bot has seen. None when it names nobody: extra words make it name nobody."""
    for converter in (commands.MemberConverter(), commands.UserConverter()):
        with contextlib.suppress(commands.BadArgument):
            return await converter.convert(ctx, argument)
    return None
