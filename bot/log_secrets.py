"""Interaction and webhook tokens kept out of discord.py's log lines.

An interaction's token lets whoever holds it post and edit as the bot for 15 minutes
(receiving-and-responding.mdx, "Followup Messages"), and a webhook's token for good. discord.py
writes them into its lines: the request URL (`/interactions/{id}/{token}/callback`,
`/webhooks/{id}/{token}`) at DEBUG and in its 429 warning, and each gateway event, an
interaction's `token` field too, at DEBUG; and the gateway URL it connects to, a proxy's
user:password@ in it. Admins paste their logs into issues.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "<hidden>"
_IN_PATHS = re.compile(r"(/(?:interactions|webhooks)/\d+/)[^/\s?'\"]+")
_IN_EVENTS = re.compile(r"""(['"]token['"]:\s*['"])[^'"]+""")
_IN_URLS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")  # a proxy's user:password@
LOGGERS = ("discord.http", "discord.webhook.async_", "discord.gateway")


class HideTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = _IN_PATHS.sub(rf"\g<1>{HIDDEN}", message)
        hidden = _IN_URLS.sub(r"\g<1>", _IN_EVENTS.sub(rf"\g<1>{HIDDEN}", hidden))
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


def hide_tokens() -> None:
    """On the loggers of discord.py that write them (a filter of a logger sees only its own
    records, not those of its children)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideTokens) for f in logger.filters):
            logger.addFilter(HideTokens())
