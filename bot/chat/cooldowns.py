"""COOLDOWN: a per-member budget shared by `caption` and `find`, slash commands included."""

from __future__ import annotations

from discord.ext import commands

from bot.config import Cooldown
from bot.errors import SlowDown

MAX_TRACKED = 10_000


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

    def _forget_idle(self) -> None:
        idle = [key for key, bucket in self._buckets.items() if bucket.get_tokens() == bucket.rate]
        for key in idle:
            del self._buckets[key]
