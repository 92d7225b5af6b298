"""The index's read-only SQL: what is queued, what is known, and where.

Each function takes the connection; the caller holds the store's lock around it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from bot.index.alt_text import Terms
from bot.index.frame_vectors import FrameVectors
from bot.index.refs import REF_COLUMNS, ImageRef, Key, Member, ref_from_row
from bot.index.vectors import VectorStore

_LOAD_CHUNK = 4096
MAX_ALT_MATCHES = 5000  # the newest images whose alt text matches, scored for a search


def load_vectors(conn: sqlite3.Connection, model_id: str) -> tuple[FrameVectors, list[Key]]:
    """The model's rows in memory, and the keys of rows whose embedding has a bad size."""
    dims = conn.execute(
        "SELECT dim, COUNT(*) FROM images WHERE model_id = ? GROUP BY dim ORDER BY 2 DESC",
        (model_id,),
    ).fetchall()
    if not dims:
        return FrameVectors(), []
    dim, total = dims[0]
    first = VectorStore(dim)
    first.reserve(total)
    store = FrameVectors(first)
    bad: list[Key] = []
    cursor = conn.execute(
        f"SELECT {REF_COLUMNS}, dim, embedding, frames FROM images WHERE model_id = ?",
        (model_id,),
    )
    while batch := cursor.fetchmany(_LOAD_CHUNK):
        good = []
        for row in batch:
            if row[7] == dim and row[9] >= 1 and len(row[8]) == 4 * dim * row[9]:
                good.append(row)
            else:
                bad.append((row[2], row[3]))
        frames = [np.frombuffer(row[8], np.float32).reshape(row[9], dim) for row in good]
        store.add([ref_from_row(row[:7]) for row in good], frames)
    return store, bad


def pending(
    conn: sqlite3.Connection, limit: int, channel_ids: Collection[int] | None
) -> list[ImageRef]:
    where, params = _channel_filter(channel_ids)
    rows = conn.execute(
        f"SELECT {REF_COLUMNS} FROM pending {where} ORDER BY message_id, attachment_id LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [ref_from_row(row) for row in rows]


def pending_count(
    conn: sqlite3.Connection, channel_ids: Collection[int] | None, skipping: Collection[Key] = ()
) -> int:
    where, params = _channel_filter(channel_ids)
    total = int(conn.execute(f"SELECT COUNT(*) FROM pending {where}", params).fetchone()[0])
    if not total or not skipping:
        return total
    # One lookup by key each (a few keys), not a scan of a queue that may hold thousands.
    query = f"SELECT COUNT(*) FROM pending {where or 'WHERE 1'} AND message_id = ?"
    query += " AND attachment_id = ?"
    return total - sum(conn.execute(query, (*params, *key)).fetchone()[0] for key in skipping)


def pending_up_to(conn: sqlite3.Connection, channel_ids: Collection[int], message_id: int) -> int:
    """Queued in these channels from messages up to `message_id` (that one's own too)."""
    where, params = _channel_filter(channel_ids)
    query = f"SELECT COUNT(*) FROM pending {where} AND message_id <= ?"
    return int(conn.execute(query, (*params, message_id)).fetchone()[0])


def embeddings_for_hashes(
    conn: sqlite3.Connection,
    content_hashes: Collection[str],
    model_id: str,
    channel_ids: Collection[int] | None = None,
) -> dict[str, npt.NDArray[np.float32]]:
    """The (frames, dim) embedding of each of these contents that is stored (in these
    channels, unless None), by hash: of its rows, one with the most frames."""
    hashes = list(content_hashes)
    marks = ",".join("?" * len(hashes))
    where, ids = _channel_filter(channel_ids)
    rows = conn.execute(
        f"SELECT content_hash, dim, embedding FROM images {where or 'WHERE 1'} "
        f"AND content_hash IN ({marks}) AND model_id = ?",
        (*ids, *hashes, model_id),
    )
    found: dict[str, npt.NDArray[np.float32]] = {}
    for content_hash, dim, blob in rows:
        if not blob or len(blob) % (4 * dim):
            continue
        stored = found.get(content_hash)
        if stored is None or len(blob) > stored.nbytes:
            found[content_hash] = np.frombuffer(blob, np.float32).reshape(-1, dim).copy()
    return found


def with_hash(
    conn: sqlite3.Connection, content_hash: str, model_id: str, channel_ids: Collection[int]
) -> list[Key]:
    """The images with these bytes in these channels, oldest first."""
    where, params = _channel_filter(channel_ids)
    return conn.execute(
        f"SELECT message_id, attachment_id FROM images {where} AND content_hash = ? "
        "AND model_id = ? ORDER BY message_id, attachment_id",
        (*params, content_hash, model_id),
    ).fetchall()


def of_message(
    conn: sqlite3.Connection, message_id: int, model_id: str
) -> dict[Key, tuple[str, npt.NDArray[np.float32]]]:
    """Each embedded image of a message: its content hash and its (frames, dim) embedding."""
    rows = conn.execute(
        "SELECT attachment_id, content_hash, dim, embedding FROM images "
        "WHERE message_id = ? AND model_id = ?",
        (message_id, model_id),
    ).fetchall()
    return {
        (message_id, attachment): (digest, np.frombuffer(blob, np.float32).reshape(-1, dim))
        for attachment, digest, dim, blob in rows
    }


def alt_matches(
    conn: sqlite3.Connection, terms: Terms, model_id: str, channel_ids: Collection[int]
) -> list[Key]:
    """The newest images in these channels whose alt text holds a form of every term."""
    where, params = _channel_filter(channel_ids)
    if not terms or not params:
        return []
    each = " AND ".join(
        "(" + " OR ".join("instr(alt_words, ?) > 0" for _ in forms) + ")" for forms in terms
    )
    return conn.execute(
        f"SELECT message_id, attachment_id FROM images {where} AND alt_words IS NOT NULL "
        f"AND model_id = ? AND {each} ORDER BY message_id DESC LIMIT ?",
        (*params, model_id, *(form for forms in terms for form in forms), MAX_ALT_MATCHES),
    ).fetchall()


def pending_among(conn: sqlite3.Connection, keys: Collection[Key]) -> int:
    query = "SELECT COUNT(*) FROM pending WHERE message_id = ? AND attachment_id = ?"
    return sum(conn.execute(query, key).fetchone()[0] for key in keys)


def last_message_id(
    conn: sqlite3.Connection, place_id: int, before: int | None = None, *, server: bool = False
) -> int | None:
    """In the channel `place_id`, or with `server` in the whole server. A channel's read mark
    wins over its uploads: one is written only when nothing below it is left unread, and an
    upload seen live may lie above a stretch a catch-up failed to read (the stretch outlives
    a restart; what it costs is reading again what came after the mark)."""
    below = (1 << 63) - 1 if before is None else before
    if server:
        return _server_last_message_id(conn, place_id, below)
    row = conn.execute("SELECT message_id FROM read_marks WHERE channel_id = ?", (place_id,))
    if (mark := row.fetchone()) is not None:
        return int(mark[0])
    (newest,) = conn.execute(  # an index from before the marks (schema 8) has only uploads
        "SELECT MAX(m) FROM (SELECT MAX(message_id) AS m FROM images WHERE channel_id = ? "
        "AND message_id < ? UNION ALL "
        "SELECT MAX(message_id) FROM pending WHERE channel_id = ? AND message_id < ?)",
        (place_id, below, place_id, below),
    ).fetchone()
    return None if newest is None else int(newest)


def _server_last_message_id(conn: sqlite3.Connection, guild_id: int, below: int) -> int | None:
    """From the read marks (one row per channel, each its newest message seen) and the queue:
    a server's image rows are many, each with its embedding. An index from before the marks
    (schema 8) has only its images."""
    (newest,) = conn.execute(
        "SELECT MAX(m) FROM (SELECT MAX(message_id) AS m FROM read_marks WHERE guild_id = ? "
        "AND message_id < ? UNION ALL "
        "SELECT MAX(message_id) FROM pending WHERE guild_id = ? AND message_id < ?)",
        (guild_id, below, guild_id, below),
    ).fetchone()
    if newest is None:
        (newest,) = conn.execute(
            "SELECT MAX(message_id) FROM images WHERE guild_id = ? AND message_id < ?",
            (guild_id, below),
        ).fetchone()
    return None if newest is None else int(newest)


def guilds(conn: sqlite3.Connection) -> set[int]:
    """Every server anything is kept for: images, queued ones, read marks, channel settings
    and descriptions (a member's own choices, kept for them, not counted)."""
    tables = ("images", "pending", "read_marks", "reposts", "alt_text_channels", "descriptions")
    union = " UNION ".join(f"SELECT guild_id FROM {table}" for table in tables)
    return {guild for (guild,) in conn.execute(union) if guild is not None}


def is_thread(conn: sqlite3.Connection, channel_id: int) -> bool:
    """Whether what is kept of the channel names a parent channel (a thread's rows do)."""
    (found,) = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM images WHERE channel_id = ? AND parent_id IS NOT NULL) "
        "OR EXISTS (SELECT 1 FROM pending WHERE channel_id = ? AND parent_id IS NOT NULL) "
        "OR EXISTS (SELECT 1 FROM read_marks WHERE channel_id = ? AND parent_id IS NOT NULL)",
        (channel_id, channel_id, channel_id),
    ).fetchone()
    return bool(found)


def channels(conn: sqlite3.Connection) -> list[tuple[int | None, int]]:
    rows = conn.execute(
        "SELECT DISTINCT guild_id, channel_id FROM ("
        "SELECT c.channel_id, (SELECT guild_id FROM images i WHERE "
        "i.channel_id = c.channel_id LIMIT 1) AS guild_id "
        "FROM (SELECT DISTINCT channel_id FROM images) c "
        "UNION ALL SELECT channel_id, guild_id FROM pending "
        "UNION ALL SELECT channel_id, guild_id FROM read_marks) ORDER BY channel_id"
    ).fetchall()
    return [(guild, channel) for guild, channel in rows]


def threads_under(conn: sqlite3.Connection, parent_ids: Collection[int]) -> list[tuple[int, int]]:
    """(thread_id, parent_id) of the indexed threads of these channels."""
    if not parent_ids:
        return []
    marks = ",".join("?" * len(parent_ids))
    return conn.execute(
        f"SELECT DISTINCT channel_id, parent_id FROM images WHERE parent_id IN ({marks})",
        list(parent_ids),
    ).fetchall()


def opted_out(conn: sqlite3.Connection) -> frozenset[Member]:
    return frozenset(conn.execute("SELECT guild_id, author_id FROM optouts").fetchall())


def kept_out_before(conn: sqlite3.Connection) -> dict[Member, int]:
    """Each member's boundary: the later of their `optin` and their latest `forget`."""
    rows = conn.execute(
        "SELECT guild_id, author_id, max(message_id) FROM "
        "(SELECT * FROM optins UNION ALL SELECT * FROM forgets) GROUP BY guild_id, author_id"
    ).fetchall()
    return {(guild_id, author_id): message_id for guild_id, author_id, message_id in rows}


def repost_channels(conn: sqlite3.Connection) -> frozenset[int]:
    return frozenset(row[0] for row in conn.execute("SELECT channel_id FROM reposts"))


def alt_text_channels(conn: sqlite3.Connection) -> frozenset[int]:
    return frozenset(row[0] for row in conn.execute("SELECT channel_id FROM alt_text_channels"))


def channel_settings(conn: sqlite3.Connection) -> tuple[frozenset[int], frozenset[int]]:
    """The channels that check reposts, and those that describe images without alt text."""
    return repost_channels(conn), alt_text_channels(conn)


def set_channel(
    conn: sqlite3.Connection, table: str, guild_id: int, channel_id: int, on: bool
) -> bool:
    """Turns a per-channel setting (`reposts`, `alt_text_channels`) on or off; False when it
    already was so."""
    if on:
        sql = f"INSERT OR IGNORE INTO {table} (channel_id, guild_id) VALUES (?, ?)"
        return bool(conn.execute(sql, (channel_id, guild_id)).rowcount)
    sql = f"DELETE FROM {table} WHERE channel_id = ?"
    return bool(conn.execute(sql, (channel_id,)).rowcount)


def _channel_filter(channel_ids: Collection[int] | None) -> tuple[str, tuple[int, ...]]:
    if channel_ids is None:
        return "", ()
    ids = tuple(set(channel_ids))
    if not ids:
        return "WHERE 0", ()
    return f"WHERE channel_id IN ({', '.join('?' * len(ids))})", ids
