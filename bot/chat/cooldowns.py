"""COOLDOWN: one budget per member, shared by every command that runs a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot import wording
from bot.config import Cooldown
from bot.errors import UserError

MAX_TRACKED = 10_000
_SPENDS = "spends_budget"

T = TypeVar("T", bound=Callable[..., Any])


class SlowDown(UserError, commands.CommandError, app_commands.AppCommandError):
    """Raised from a text command's hook or an app command's check; discord.py passes on only
    its own error types to the error handlers, hence both bases."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(wording.slow_down(retry_after))
        self.retry_after = retry_after


class MemberCooldown:
    def __init__(self, setting: Cooldown | None) -> None:
        self.setting = setting
        self._buckets: dict[tuple[int | None, int], commands.Cooldown] = {}

    def check(self, guild_id: int | None, user_id: int) -> None:
        """Spends one command from the member's budget, or raises SlowDown."""
        if self.setting is None:
            return
        key = (guild_id, user_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_idle()
            bucket = self._buckets[key] = commands.Cooldown(self.setting.rate, self.setting.per)
        retry_after = bucket.update_rate_limit()
        if retry_after:
            raise SlowDown(retry_after)

    def give_back(self, guild_id: int | None, user_id: int) -> None:
        """Returns the command that a failure of the bot's own spent: the member got nothing
        for it. Never past the full budget."""
        bucket = self._buckets.get((guild_id, user_id))
        if bucket is not None and bucket.get_tokens() < bucket.rate:
            bucket.update_rate_limit(tokens=-1)

    def _forget_idle(self) -> None:
        idle = [key for key, bucket in self._buckets.items() if bucket.get_tokens() == bucket.rate]
        for key in idle:
            del self._buckets[key]


def spends_budget(command: T) -> T:
    """The one place COOLDOWN is enforced: on a hybrid command (both its forms, after its
    arguments are read, so a typo costs nothing) or on a context menu's callback."""
    if isinstance(command, commands.Command):
        command.before_invoke(_spend_for_context)
        command.extras[_SPENDS] = True
        return command  # type: ignore[return-value]
    return app_commands.check(_spend_for_interaction)(command)


def spends(command: object) -> bool:
    """Whether the command (text, hybrid or context menu) spends from the budget."""
    if isinstance(command, commands.Command):
        return bool(command.extras.get(_SPENDS))
    return _spend_for_interaction in getattr(command, "checks", ())


async def _spend_for_context(_cog: object, ctx: commands.Context[Any]) -> None:
    _budget(ctx.bot).check(ctx.guild.id if ctx.guild else None, ctx.author.id)


def _spend_for_interaction(interaction: discord.Interaction) -> bool:
    _budget(interaction.client).check(interaction.guild_id, interaction.user.id)
    return True


def _budget(client: object) -> MemberCooldown:
    budget = getattr(client, "cooldown", None)
    if not isinstance(budget, MemberCooldown):
        raise TypeError("the client has no MemberCooldown named 'cooldown'")
    return budget
