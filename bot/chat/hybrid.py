"""discord.py's `hybrid_command`, typed so that mypy accepts a cog's method.

discord.py types the decorator's argument as a union of two `Concatenate` signatures, which
mypy cannot solve for a method; the object made is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from discord.ext import commands

Callback = Callable[..., Coroutine[Any, Any, None]]
HybridCommand = commands.HybridCommand[Any, ..., None]


def hybrid_command(**attrs: Any) -> Callable[[Callback], HybridCommand]:
    """One command for both `!name` and `/name` (discord.py docs, "Hybrid Commands")."""
    decorator: Callable[[Callback], HybridCommand] = commands.hybrid_command(**attrs)
    return decorator
