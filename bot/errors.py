"""Errors a user can act on; their message is the reply."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix or wait out; the message is the reply."""

    ours = False  # the bot's own trouble (busy, say): the command is not counted (COOLDOWN)

    def __init_subclass__(cls, *, ours: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.ours = ours
