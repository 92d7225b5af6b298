"""Every sentence about members' own images in the index: `forget`, `optout` and `optin`.

Part of `bot.wording`, which re-exports it: callers write `wording.X` for any sentence.
"""

from __future__ import annotations

from bot.markdown import as_typed

FORGET_NEEDS_SERVER_PERMISSION = (
    "Forgetting someone else's images reaches every channel of this server, so it takes the "
    "Manage Messages permission for the whole server (from a role), not in one channel only."
)


def forgotten(removed: int, whose: str | None, in_server: bool) -> str:
    """`whose` is None for the asker's own images, else the member's display name."""
    owner = "your" if whose is None else f"{as_typed(whose)}'s"
    where = "this server's" if in_server else "this conversation's"
    if removed == 1:
        return f"Removed 1 image of {'yours' if whose is None else owner} from {where} index."
    return f"Removed {removed} of {owner} images from {where} index."


def forget_nobody(prefix: str) -> str:
    """`forget` named someone, or something, that is no member or user."""
    return (
        "I found no member or user by that name or ID, so I removed nothing. Name one person: "
        f"`{prefix}forget @member`, or `{prefix}forget` and their user ID if they have left."
    )


def forget_ambiguous(prefix: str) -> str:
    """`forget` named someone by a name that more than one person goes by."""
    return (
        "More than one person here goes by that name, so I removed nothing. Name one: "
        f"`{prefix}forget @member`, or `{prefix}forget` and their user ID."
    )


def opted_out(removed: int, in_server: bool) -> str:
    where = "this server" if in_server else "this conversation"
    images = "image" if removed == 1 else "images"
    return (
        f"Done: I removed {removed} {images} of yours from {where}'s index and won't "
        f"index your uploads in {where} until you say `optin`."
    )


def opted_in(was_out: bool, in_server: bool) -> str:
    where = "this server" if in_server else "this conversation"
    if not was_out:
        return f"You were not opted out: I index your uploads in {where} already."
    return f"Done: I'll index the images you post in {where} from now on (not earlier ones)."
