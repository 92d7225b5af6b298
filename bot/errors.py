"""Errors a user can act on; their message is the reply."""

from __future__ import annotations

import math


class UserError(Exception):
    """Something the user can fix or wait out; the message is the reply."""


class SlowDown(UserError):
    def __init__(self, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"Slow down a little: try again in {seconds} s.")
        self.retry_after = retry_after
