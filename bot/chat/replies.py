"""The one place that words an error for a Discord user (None: our bug, log it)."""

from __future__ import annotations

from discord import app_commands
from discord.ext import commands

from bot.chat.find_syntax import FindSyntaxError
from bot.errors import SlowDown, UserError
from bot.images.decode import ImageError
from bot.images.download import DownloadError

_READABLE = (UserError, ImageError, DownloadError, FindSyntaxError)


def user_message(error: BaseException) -> str | None:
    """The reply for an error the user should see, or None for our own bugs."""
    error = _unwrap(error)
    if isinstance(error, ImageError):
        return f"I can't use that image: {error.reason}."
    if isinstance(error, DownloadError):
        return f"I couldn't get that image: {error}."
    if isinstance(error, FindSyntaxError):
        return f"I couldn't read that search: {error}."
    if isinstance(error, _READABLE):
        return str(error)
    if isinstance(error, (commands.CommandOnCooldown, app_commands.CommandOnCooldown)):
        return str(SlowDown(error.retry_after))
    if isinstance(error, (commands.MissingPermissions, app_commands.MissingPermissions)):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"You need the {needed} permission for that."
    if isinstance(error, commands.NotOwner):
        return "Only the bot's owners can do that."
    if isinstance(error, commands.NoPrivateMessage):
        return "That works only in a server, not in DMs."
    if isinstance(error, commands.UserInputError):
        return str(error)
    if isinstance(error, (commands.CheckFailure, app_commands.CheckFailure)):
        return "You can't use that command here."
    return None


def _unwrap(error: BaseException) -> BaseException:
    """The exception a command raised, from inside discord.py's invoke-error wrappers."""
    for _ in range(4):
        inner = getattr(error, "original", None)
        if not isinstance(inner, BaseException) or inner is error:
            break
        error = inner
    return error
