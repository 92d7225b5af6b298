"""What members chose about their uploads (`optout`, `optin`, `forget`): in SQLite, and in
memory for reads from any thread; the store's part on the db thread (bot.index.store).

A member who opted out stays out. Otherwise a member's uploads from before a boundary message
stay out: their `optin` (posted while they were out) or their latest `forget` (removed at
their word). Catch-up and `index` read old history again; the boundary keeps them from
bringing those uploads back.
"""

from __future__ import annotations

import sqlite3

from bot.index import queries, removal
from bot.index.database import Database
from bot.index.frame_vectors import FrameVectors
from bot.index.refs import Key, Member, member_of

_MEMBER_ROWS = "guild_id IS ? AND author_id = ?"


class Members(Database):
    _vectors: FrameVectors
    # Replaced whole, so that any thread may read them.
    opted_out: frozenset[Member] = frozenset()
    kept_out_before: dict[Member, int]  # each member's boundary message (set on load)

    def _read_members(self, conn: sqlite3.Connection) -> None:
        # The boundaries first: a member leaving `opted_out` is never seen with neither.
        self.kept_out_before = queries.kept_out_before(conn)
        self.opted_out = queries.opted_out(conn)

    def forget_author(self, guild_id: int | None, author_id: int, message_id: int) -> int:
        """Removes an author's images in one guild (``None``: in DMs), indexed and pending, and
        keeps out their uploads from before `message_id` (the `forget`); returns how many."""
        return self._remove_member(guild_id, author_id, "forgets", message_id)

    def opt_out(self, guild_id: int | None, author_id: int) -> int:
        """Stops indexing the member's uploads here and removes their images; returns how many."""
        return self._remove_member(guild_id, author_id, "optouts", None)

    def opt_in(self, guild_id: int | None, author_id: int, message_id: int) -> bool:
        """Indexes the member's uploads here again from their message `message_id` on; False if
        they had not opted out."""
        member = member_of(guild_id, author_id)
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM optouts WHERE guild_id = ? AND author_id = ?", member)
            if was_out := bool(cur.rowcount):
                conn.execute(
                    "INSERT OR REPLACE INTO optins VALUES (?, ?, ?)", (*member, message_id)
                )
        self._reread_members()
        return was_out

    def keeps_out(self, guild_id: int | None, author_id: int, message_id: int) -> bool:
        """Whether a message's uploads stay out of the index: its author opted out here, or
        posted it before their boundary (though it is read only afterwards)."""
        member = member_of(guild_id, author_id)
        return member in self.opted_out or message_id < self.kept_out_before.get(member, 0)

    def _remove_member(
        self, guild_id: int | None, author_id: int, table: str, message_id: int | None
    ) -> int:
        member = member_of(guild_id, author_id)
        gone: list[Key] = []
        with self._tx() as conn:
            if message_id is None:
                conn.execute(f"INSERT OR IGNORE INTO {table} VALUES (?, ?)", member)
            else:  # a later `forget` moves the boundary on, never back
                conn.execute(
                    f"INSERT INTO {table} VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
                    "message_id = max(message_id, excluded.message_id)",
                    (*member, message_id),
                )
            removed = removal.delete_where(conn, _MEMBER_ROWS, [(guild_id, author_id)], gone)
        self._reread_members()
        self._vectors.remove(gone)
        return removed

    def _reread_members(self) -> None:
        """After a change is committed (memory never runs ahead of the file)."""
        with self._lock:
            self._read_members(self._conn)
