"""Every sentence about finding images: `find`'s syntax and results, and reposts.

Part of `bot.wording`, which re-exports it: callers write `wording.X` for any sentence.
"""

from __future__ import annotations

from bot.markdown import as_typed

# -- the syntax of find ---------------------------------------------------------------------------

QUOTE_NOT_CLOSED = "the query's closing quote is missing"
QUERY_MISSING = (
    'say what to look for, e.g. `find "a photo of parrots"`, or attach an image '
    "(or reply to a message with one) to find images like it"
)
QUERY_MISSING_SLASH = "say what to look for, or give an image to find images like it"
SCOPE_CHOICES = "`scope:` must be `channel` or `server`"


def unknown_find_word(word: str) -> str:
    return (
        f"I don't understand '{as_typed(word)}': after the query, use `top: 3` or "
        "`scope: server` (put the query in quotes if it contains such words)"
    )


def flag_needs_value(name: str) -> str:
    return f"`{name}:` needs a value"


def flag_given_twice(name: str) -> str:
    return f"`{name}:` is given twice"


def top_range(most: int) -> str:
    return f"`top:` must be a number from 1 to {most}"


# -- results --------------------------------------------------------------------------------------

EMPTY_INDEX = (
    "I have no images indexed here yet. I index every image posted in channels I can read "
    "from the moment I join; a moderator can run `index` to add this channel's history."
)
NOTHING_SHOWABLE = (
    "The images that match are gone, or in channels I can no longer read, so I have none to show."
)
NO_HISTORY = "You can't read this channel's earlier messages, so I won't show you its images."
BOT_CANNOT_READ = (
    "I can't read this channel's messages, so I have none of its images: a server admin can "
    "give me View Channel and Read Message History here."
)
NO_OTHER_IMAGES = "I have no other images indexed here to compare yours with."
HISTORY_NOT_SHOWN = (
    "Links only: some who can see this channel can't read its earlier messages, so I don't show "
    "its images to everyone here. /find with scope: server answers you alone."
)


def result_title(
    rank: int, score: str, weak: bool, spoiler: bool = False, alt: bool = False
) -> str:
    """`score` as shown: a cosine with 2 decimals, or a SigLIP probability as a percentage."""
    return (
        f"#{rank} · score {score}"
        + (" · alt text" if alt else "")
        + (" · weak match" if weak and not alt else "")
        + (" · (spoiler)" if spoiler else "")
    )


def posted_by(mention: str, jump_url: str) -> str:
    return f"Posted by {mention}: {jump_url}"


NO_EMBED_LINKS = (
    "(I can't show the images here: a moderator can give me the Embed Links permission in this "
    "channel.)"
)
SENT_BY_DM = "Results from other channels you can read were sent to you in a direct message."
NOT_SENT_BY_DM = (
    "I couldn't send you a direct message; use /find with scope: server to see results from "
    "other channels privately."
)

# -- reposts --------------------------------------------------------------------------------------

REPOSTS_USAGE = "say `reposts on`, `reposts off`, or just `reposts` to see whether it is on"


def reposts_on(channel: str, min_score: float, already: bool) -> str:
    start = "Reposts are already checked" if already else "Done: I'll check reposts"
    return (
        f"{start} in {channel} and its threads: an image posted there before (the same file, "
        f"or a score of at least {min_score:.2f}) gets a reply with a link to its first post. "
        "`reposts off` stops it."
    )


def reposts_off(channel: str, was_on: bool) -> str:
    if not was_on:
        return f"Reposts were not checked in {channel}."
    return f"Done: I no longer check reposts in {channel}."


def reposts_state(channel: str, on: bool) -> str:
    if on:
        return f"Reposts are checked in {channel} and its threads; `reposts off` stops it."
    return f"Reposts are not checked in {channel}; `reposts on` starts it (Manage Messages)."


def repost_line(link: str, score: float, identical: bool) -> str:
    same = "the same file, " if identical else ""
    return f"Posted here before: {link} ({same}score {score:.2f})"


def reposts_not_shown(count: int) -> str:
    plural = "s" if count > 1 else ""
    return f"(and {count} more image{plural} of this post posted here before)"


LATE_AGE_RESTRICTED = (
    "Your search in an age-restricted channel took too long to answer there, and I don't send "
    "age-restricted images by direct message: please ask again."
)
