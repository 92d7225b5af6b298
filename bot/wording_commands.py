"""What a slash command or the menu says where it cannot run at all: in a server without the
bot, or when the member's client offers a command older than the bot's."""

from __future__ import annotations

NOT_IN_SERVER = (
    "I'm not a member of this server, so I can't see its channels or images. A server admin "
    "can invite me (the bot itself, not only its commands) to use me here."
)
STALE_COMMAND = (
    "This command is out of date here: the bot changed since its commands were published. "
    "The bot's owner can publish them again with `sync` (or `sync here`, where they were "
    "published to this server only); meanwhile, commands typed as messages work."
)
UNAVAILABLE_SERVER = (
    "Discord isn't giving me this server's channels right now (an outage on its side), so I "
    "can't tell who may see what here. Please try again in a few minutes."
)
