"""A Discord-compatible test server (REST + gateway + media) for end-to-end tests with discord.py.

See :class:`FakeDiscord` for the API and :class:`Interaction` for simulated app commands.
"""

from .hostroutes import CDN_HOST, EXTERNAL_PROXY_HOSTS, MEDIA_HOSTS, MEDIA_PROXY_HOST
from .interaction import Interaction
from .media import URL_LIFETIME_S
from .offered import NotOffered
from .payloads import (
    ADD_REACTIONS,
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    ATTACH_FILES,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    EMBED_LINKS,
    INVITE_PERMISSIONS,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    Upload,
)
from .server import FakeDiscord

__all__ = [
    "ADD_REACTIONS",
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "CDN_HOST",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "EMBED_LINKS",
    "EXTERNAL_PROXY_HOSTS",
    "INVITE_PERMISSIONS",
    "MANAGE_MESSAGES",
    "MANAGE_THREADS",
    "MEDIA_HOSTS",
    "MEDIA_PROXY_HOST",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "URL_LIFETIME_S",
    "USE_APPLICATION_COMMANDS",
    "VIEW_CHANNEL",
    "FakeDiscord",
    "Interaction",
    "NotOffered",
    "Upload",
]
