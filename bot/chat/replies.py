"""Which words a Discord user reads for an error (the words themselves are in `bot.wording`)."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import wording, wording_commands
from bot.chat.find_syntax import FindSyntaxError
from bot.errors import UserError
from bot.images.decode import ImageError
from bot.images.download import DownloadError

log = logging.getLogger(__name__)

INVOKED = (commands.CommandInvokeError, app_commands.CommandInvokeError)


def reply_for(error: Exception, command: object) -> str:
    """What the user reads; an error that is our bug is logged once, with its traceback."""
    text = user_message(error)
    if text is None:
        log.error("command %s failed", command, exc_info=getattr(error, "original", error))
        text = wording.OUR_BUG
    return text


def user_message(error: BaseException) -> str | None:
    """The reply for an error the user should see, or None for our own bugs."""
    error = _unwrap(error)
    if isinstance(error, ImageError):
        return wording.image_refused(error.reason)
    if isinstance(error, DownloadError):
        return wording.image_not_fetched(error)
    if isinstance(error, FindSyntaxError):
        return wording.search_unreadable(error)
    if isinstance(error, discord.DiscordServerError):  # a 5xx past discord.py's retries
        return wording.DISCORD_TROUBLE
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return wording_commands.STALE_COMMAND  # published by an older version of the bot
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, (commands.CommandOnCooldown, app_commands.CommandOnCooldown)):
        return wording.slow_down(error.retry_after)
    if isinstance(error, (commands.MissingPermissions, app_commands.MissingPermissions)):
        return wording.permission_needed(error.missing_permissions)
    if isinstance(error, commands.NotOwner):
        return wording.OWNERS_ONLY
    if isinstance(error, commands.NoPrivateMessage):
        return wording.SERVERS_ONLY
    if isinstance(error, commands.UserInputError):
        return str(error)
    if isinstance(error, (commands.CheckFailure, app_commands.CheckFailure)):
        return wording.NOT_HERE
    return None


def ours(error: BaseException) -> bool:
    """The command ran and failed through no doing of the member's: the bot was busy or out
    of memory, Discord failed, or a bug of ours."""
    chain = _chain(error)
    if not any(isinstance(wrapper, INVOKED) for wrapper in chain):
        return False  # refused before its body ran, which is after the budget is spent
    raised = chain[-1]
    return (
        isinstance(raised, discord.DiscordServerError)
        or (isinstance(raised, DownloadError) and raised.transient)  # Discord's media host
        or (isinstance(raised, UserError) and raised.ours)
        or user_message(raised) is None
    )


def _unwrap(error: BaseException) -> BaseException:
    """The exception a command raised, from inside discord.py's invoke-error wrappers."""
    return _chain(error)[-1]


def _chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while len(chain) < 5:
        inner = getattr(chain[-1], "original", None)
        if not isinstance(inner, BaseException) or inner is chain[-1]:
            break
        chain.append(inner)
    return chain
