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
    return _goes_by(argument, author.name, author.global_name, author.display_name)


class AmbiguousName(Exception):
    """More than one person goes by the name given."""


async def person_named(ctx: commands.Context[Any], argument: str) -> discord.abc.User | None:
    """The whole argument as one person: a member of this server (mention, ID or name), else
    any Discord user by mention or ID (someone who left; discord.py asks the API) or by a name
    the bot has seen. None when it names nobody: extra words make it name nobody."""
    if not _MENTION_OR_ID.fullmatch(argument) and "#" not in argument:
        return await _by_name(ctx, argument)
    for converter in (commands.MemberConverter(), commands.UserConverter()):
        with contextlib.suppress(commands.BadArgument):
            return await converter.convert(ctx, argument)
    return None


async def _by_name(ctx: commands.Context[Any], name: str) -> discord.abc.User | None:
    """The one person who goes by `name` (a username, display name or nickname). discord.py's
    converters take the first of several, in the order Discord lists them: two members, one
    called so by username, the other by nickname, and `forget` could remove the wrong one's
    images for good. Raises AmbiguousName."""
    people: dict[int, discord.abc.User] = {}
    if ctx.guild is not None:
        # Discord matches the start of usernames (gateway-events.mdx, "Request Guild Members")
        members = await ctx.guild.query_members(name, limit=100, cache=False)
        people.update((m.id, m) for m in members if _goes_by(name, m.name, m.global_name, m.nick))
    if not people:  # someone who left, known by name from elsewhere
        people.update((u.id, u) for u in ctx.bot.users if _goes_by(name, u.name, u.global_name))
    if len(people) > 1:
        raise AmbiguousName(name)
    return next(iter(people.values()), None)


def _goes_by(name: str, *names: str | None) -> bool:
    """In any case: usernames are lower case, and phones capitalise what is typed."""
    return name.casefold() in {known.casefold() for known in names if known}
