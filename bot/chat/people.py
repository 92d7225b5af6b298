"""Who a command names: the whole argument as one person, found the way `forget` needs."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import discord
from discord.ext import commands

from bot.chat.find_syntax import unquoted

_MENTION_OR_ID = re.compile(r"<@!?([0-9]{15,20})>|([0-9]{15,20})")


def named(argument: str) -> str:
    """The argument without quotes around it, and without the @ of a name typed with it but
    not picked from the client's list of members: Discord then sends the text "@bob", not a
    mention."""
    return unquoted(argument.strip()).strip().removeprefix("@")


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
