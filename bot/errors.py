"""Errors a user can act on; their message is the reply."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix or wait out; the message is the reply."""
