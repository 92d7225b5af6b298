"""The automatic descriptions the bot posted: which message each describes, where, and who
posted that message; so that a 🗑️ from the poster can take one down and deleting the original
takes it along, after restarts too.

The store's part on the db thread (bot.index.store). A row goes when either message is deleted,
with its channel (a thread's rows with its parent too) or with the server.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bot.index.database import Database

_COLUMNS = "description_id, message_id, channel_id, parent_id, guild_id, poster_id, covers"

# What a description covers of its message: each image it was posted for, by attachment id, and
# whether that image had a spoiler cover. An edit that changes this takes the description down.
Covers = tuple[tuple[int, bool], ...]


def covers_text(covers: Sequence[tuple[int, bool]]) -> str:
    return json.dumps([[attachment_id, spoiler] for attachment_id, spoiler in covers])


@dataclass(frozen=True)
class Description:
    description_id: int  # the bot's reply
    message_id: int  # the message it describes, in the same channel
    channel_id: int
    parent_id: int | None  # the channel of a thread
    guild_id: int
    poster_id: int  # who posted that message
    covers: str | None = None  # `covers_text`; None in rows from before schema version 9

    @property
    def covered(self) -> Covers | None:
        """None where it is not known (a description posted by an older version)."""
        if self.covers is None:
            return None
        return tuple((int(a), bool(s)) for a, s in json.loads(self.covers))


class Described(Database):
    def add_description(self, description: Description) -> None:
        with self._tx() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO descriptions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                dataclasses.astuple(description),
            )

    def descriptions_of(self, message_id: int) -> list[Description]:
        """The descriptions posted for this message (one, unless a post raced an edit)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM descriptions WHERE message_id = ?", (message_id,)
            ).fetchall()
        return [Description(*row) for row in rows]

    def description(self, description_id: int) -> Description | None:
        """The description the bot posted as this message, if it is one."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM descriptions WHERE description_id = ?", (description_id,)
            ).fetchone()
        return Description(*row) if row else None

    def forget_descriptions(self, description_ids: Collection[int]) -> None:
        """These descriptions were taken down (or deleted by someone): their records go. By
        the descriptions' own IDs, never by their originals': a record written meanwhile for
        the same original (a description still on its way) is another's to forget."""
        ids = sorted(set(description_ids))
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self._tx() as conn:
            conn.execute(f"DELETE FROM descriptions WHERE description_id IN ({marks})", ids)
