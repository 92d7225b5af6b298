"""What the index lets go of: rows past the per-channel bound and past the retention window.

Each function runs inside the caller's transaction and reports the embedded rows it removed in
`gone`, so the caller can drop them from the in-memory vectors too.
"""

from __future__ import annotations

import sqlite3

from bot.index.refs import Key

DAY_S = 86400.0
_OLDER = "channel_id = ? AND (message_id, attachment_id) < (?, ?)"


def retention_cutoff(now: float, retention_days: float) -> float | None:
    """Images posted before this time are dropped (None: retention is off)."""
    return now - retention_days * DAY_S if retention_days else None


def channel_floor(conn: sqlite3.Connection, channel_id: int, per_channel: int) -> Key | None:
    """The oldest key a full channel keeps (None while it holds fewer than per_channel)."""
    row = conn.execute(
        "SELECT message_id, attachment_id FROM images WHERE channel_id = ? "
        "ORDER BY message_id DESC, attachment_id DESC LIMIT 1 OFFSET ?",
        (channel_id, per_channel - 1),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def prune_channel(
    conn: sqlite3.Connection, channel_id: int, per_channel: int, gone: list[Key]
) -> int:
    """Keeps the newest per_channel images of the channel; returns rows removed."""
    floor = channel_floor(conn, channel_id, per_channel)
    if floor is None:
        return 0
    return _delete(conn, _OLDER, (channel_id, *floor), gone)


def prune_retention(conn: sqlite3.Connection, cutoff: float | None, gone: list[Key]) -> int:
    if cutoff is None:
        return 0
    return _delete(conn, "created_at < ?", (cutoff,), gone)


def prune_all(
    conn: sqlite3.Connection, per_channel: int, cutoff: float | None, gone: list[Key]
) -> int:
    """Applies both bounds everywhere; returns rows removed."""
    full = conn.execute(
        "SELECT channel_id FROM images GROUP BY channel_id HAVING COUNT(*) >= ?",
        (per_channel,),
    ).fetchall()
    removed = sum(prune_channel(conn, channel_id, per_channel, gone) for (channel_id,) in full)
    return removed + prune_retention(conn, cutoff, gone)


def delete_where(
    conn: sqlite3.Connection, where: str, params: list[tuple[object, ...]], gone: list[Key]
) -> int:
    """Deletes the rows matching `where`, once per parameter tuple; returns rows removed."""
    return sum(_delete(conn, where, args, gone) for args in params)


def _delete(conn: sqlite3.Connection, where: str, args: tuple[object, ...], gone: list[Key]) -> int:
    """From both tables: an image is either embedded or pending, and goes either way."""
    rows = conn.execute(
        f"DELETE FROM images WHERE {where} RETURNING message_id, attachment_id", args
    ).fetchall()
    gone.extend((m, a) for m, a in rows)
    return len(rows) + conn.execute(f"DELETE FROM pending WHERE {where}", args).rowcount
