"""Per-channel settings (`reposts on`, `alttext on`): in SQLite, and in memory for reads from
any thread; the store's part on the db thread (bot.index.store)."""

from __future__ import annotations

import sqlite3

from bot.index import queries
from bot.index.database import Database


class ChannelSettings(Database):
    # Replaced whole, so that any thread may read them.
    repost_channels: frozenset[int] = frozenset()
    alt_text_channels: frozenset[int] = frozenset()

    def set_reposts(self, guild_id: int, channel_id: int, on: bool) -> bool:
        """Turns repost checks on or off in a channel; False when it already was so."""
        return self._set_channel("reposts", guild_id, channel_id, on)

    def set_alt_text(self, guild_id: int, channel_id: int, on: bool) -> bool:
        """Turns automatic alt text on or off in a channel; False when it already was so."""
        return self._set_channel("alt_text_channels", guild_id, channel_id, on)

    def _set_channel(self, table: str, guild_id: int, channel_id: int, on: bool) -> bool:
        with self._tx() as conn:
            changed = queries.set_channel(conn, table, guild_id, channel_id, on)
        self._reread_settings()
        return changed

    def _read_settings(self, conn: sqlite3.Connection) -> None:
        self.repost_channels, self.alt_text_channels = queries.channel_settings(conn)

    def _reread_settings(self) -> None:
        """After a change is committed: with WAL, a full disk fails the COMMIT, after the
        transaction's own reads already saw the change."""
        with self._lock:
            self._read_settings(self._conn)

    def _forget_settings(
        self, conn: sqlite3.Connection, where: str, params: list[tuple[object, ...]]
    ) -> None:
        """Inside a transaction: the settings of channels gone (or of a server left); the caller
        rereads them once it has committed (`_reread_settings`)."""
        for table in ("reposts", "alt_text_channels"):
            conn.executemany(f"DELETE FROM {table} WHERE {where}", params)
