"""What `!index` and `!reposts on` say where they cannot do what was asked, and of a backfill
that is running already or outlasts its wait."""

from __future__ import annotations

BACKFILL_RUNNING = "I'm already reading this channel's history; that run says when it's done."


def ignored_channel(what: str) -> str:
    """`what`: what cannot happen here, for the channel is never indexed."""
    return f"This channel is in the bot's IGNORE_CHANNELS setting, so {what}."


INDEX_IGNORED = ignored_channel("none of its images are indexed")
REPOSTS_IGNORED = ignored_channel("reposts cannot be checked here (its images are never indexed)")


def backfill_still_indexing(waiting: int, seen: int) -> str:
    plural = "" if waiting == 1 else "s"
    return (
        f"Read {seen} messages; {waiting} image{plural} still being indexed: each becomes "
        "searchable as it is done."
    )
