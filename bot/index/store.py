"""The image index: SQLite storage of image refs and embeddings, plus in-memory vector search.

Synchronous and not thread-safe by design beyond a coarse lock: the caller sends every call
through one single-thread executor. Only IDs are stored, never attachment URLs (they expire).

Every image the index knows is in exactly one of two tables: ``pending`` (seen, not yet
embedded) or ``images`` (embedded). Every change runs in one transaction, so a process killed at
any point leaves each upload either indexed or still pending. Only rows embedded by the index's
current ``model_id`` are loaded into memory and searched; rows of any other model are kept (and
can be re-queued with :meth:`ImageIndex.requeue_stale`) but never mixed into a search.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.index.vectors import Hit, ImageRef, Key, VectorStore

__all__ = ["SCHEMA_VERSION", "Hit", "ImageIndex", "ImageRef"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_DAY = 86400.0
_LOAD_CHUNK = 4096

_REF_COLS = "guild_id, channel_id, message_id, attachment_id, author_id, created_at, parent_id"

_SCHEMA_V1 = """
CREATE TABLE images (
    message_id    INTEGER NOT NULL,
    attachment_id INTEGER NOT NULL,
    guild_id      INTEGER,
    channel_id    INTEGER NOT NULL,
    parent_id     INTEGER,
    author_id     INTEGER NOT NULL,
    created_at    REAL    NOT NULL,
    content_hash  TEXT    NOT NULL,
    model_id      TEXT    NOT NULL,
    dim           INTEGER NOT NULL,
    embedding     BLOB    NOT NULL,
    PRIMARY KEY (message_id, attachment_id)
);
CREATE INDEX images_channel ON images (channel_id, message_id, attachment_id);
CREATE INDEX images_parent ON images (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX images_guild_author ON images (guild_id, author_id);
CREATE INDEX images_hash ON images (content_hash, model_id);
CREATE INDEX images_model ON images (model_id, dim);
CREATE INDEX images_created ON images (created_at);

CREATE TABLE pending (
    message_id    INTEGER NOT NULL,
    attachment_id INTEGER NOT NULL,
    guild_id      INTEGER,
    channel_id    INTEGER NOT NULL,
    parent_id     INTEGER,
    author_id     INTEGER NOT NULL,
    created_at    REAL    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, attachment_id)
);
CREATE INDEX pending_channel ON pending (channel_id, message_id, attachment_id);
CREATE INDEX pending_parent ON pending (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX pending_guild_author ON pending (guild_id, author_id);
CREATE INDEX pending_created ON pending (created_at);
"""


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


# MIGRATIONS[v] upgrades a database at version v - 1 to version v, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_1}


def _ref(row: Iterable[Any]) -> ImageRef:
    guild, channel, message, attachment, author, created, parent = row
    return ImageRef(guild, channel, message, attachment, author, created, parent)


def _ref_params(ref: ImageRef) -> tuple[int | float | None, ...]:
    return (
        ref.guild_id,
        ref.channel_id,
        ref.message_id,
        ref.attachment_id,
        ref.author_id,
        float(ref.created_at),
        ref.parent_id,
    )


class ImageIndex:
    """SQLite-backed image index with an in-memory matrix of the current model's embeddings."""

    def __init__(
        self,
        path: Path,
        model_id: str,
        *,
        per_channel: int = 1000,
        retention_days: float = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_channel < 1:
            raise ValueError("per_channel must be at least 1")
        if retention_days < 0:
            raise ValueError("retention_days must be 0 (off) or positive")
        self.path = Path(path)
        self.model_id = model_id
        self.per_channel = per_channel
        self.retention_days = retention_days
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # Big pages: a 512-dim row (about 2.2 KB) fills a 4 KB page alone; 16 KB pages hold
            # seven, halving the file. Only takes effect on a new file, before WAL is on.
            self._conn.execute("PRAGMA page_size=16384")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._vectors = VectorStore()
            self._load()
        except BaseException:
            self._conn.close()
            self._closed = True
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on success and rolled back on any exception.

        Explicit BEGIN/COMMIT (autocommit connection) rather than ``with conn:``: Python 3.11's
        implicit transactions do not cover DDL, which migrations need to be atomic too.
        """
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the image index is closed")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this code's "
                f"{SCHEMA_VERSION}: upgrade the bot"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as conn:
                MIGRATIONS[target](conn)
                conn.execute(f"PRAGMA user_version = {target}")
            log.info("image index %s migrated to schema version %d", self.path, target)

    def _load(self) -> None:
        """Fill the matrix with the current model's rows; re-queue rows of a bad size."""
        dims = self._conn.execute(
            "SELECT dim, COUNT(*) FROM images WHERE model_id = ? GROUP BY dim ORDER BY 2 DESC",
            (self.model_id,),
        ).fetchall()
        if not dims:
            return
        dim, total = dims[0]
        store = self._vectors = VectorStore(dim)
        store.reserve(total)
        bad: list[Key] = []
        cursor = self._conn.execute(
            f"SELECT {_REF_COLS}, dim, embedding FROM images WHERE model_id = ?",
            (self.model_id,),
        )
        while batch := cursor.fetchmany(_LOAD_CHUNK):
            good = []
            for row in batch:
                if row[7] == dim and len(row[8]) == 4 * dim:
                    good.append(row)
                else:
                    bad.append((row[2], row[3]))
            vecs = np.frombuffer(b"".join(row[8] for row in good), np.float32).reshape(-1, dim)
            store.add([_ref(row[:7]) for row in good], vecs)
        if bad:
            log.warning("image index: re-queueing %d rows with a bad embedding size", len(bad))
            with self._tx() as conn:
                for key in bad:
                    conn.execute(
                        f"INSERT OR IGNORE INTO pending ({_REF_COLS}) "
                        f"SELECT {_REF_COLS} FROM images "
                        "WHERE message_id = ? AND attachment_id = ?",
                        key,
                    )
                    conn.execute(
                        "DELETE FROM images WHERE message_id = ? AND attachment_id = ?", key
                    )

    # -- pending work ----------------------------------------------------------------------

    def add_pending(self, refs: Iterable[ImageRef]) -> int:
        """Queue uploads to embed; returns how many were new.

        Skips refs already pending or indexed for the current model, refs older than the
        retention window, and refs older than everything kept in a channel that is already full
        (they would be pruned as soon as they were added). A ref indexed by another model moves
        back to pending.
        """
        cutoff = self._retention_cutoff()
        added = 0
        with self._tx() as conn:
            floors: dict[int, Key | None] = {}
            for ref in refs:
                key = ref.key
                if key in self._vectors or (cutoff is not None and ref.created_at < cutoff):
                    continue
                if ref.channel_id not in floors:
                    floors[ref.channel_id] = self._channel_floor(ref.channel_id)
                floor = floors[ref.channel_id]
                if floor is not None and key < floor:
                    continue
                cur = conn.execute(
                    f"INSERT OR IGNORE INTO pending ({_REF_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    _ref_params(ref),
                )
                if cur.rowcount:
                    added += 1
                    # Indexed by another model (the current one is in memory): re-embed it.
                    conn.execute(
                        "DELETE FROM images WHERE message_id = ? AND attachment_id = ?", key
                    )
        return added

    def pending(
        self, limit: int = 64, channel_ids: Collection[int] | None = None
    ) -> list[ImageRef]:
        """Up to ``limit`` queued refs, oldest message first."""
        where, params = _channel_filter(channel_ids)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_REF_COLS} FROM pending {where} "
                "ORDER BY message_id, attachment_id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_ref(row) for row in rows]

    def pending_count(self, channel_ids: Collection[int] | None = None) -> int:
        where, params = _channel_filter(channel_ids)
        with self._lock:
            (count,) = self._conn.execute(
                f"SELECT COUNT(*) FROM pending {where}", params
            ).fetchone()
        return int(count)

    def drop_pending(self, refs: Iterable[ImageRef]) -> None:
        """Forget queued refs (refused or vanished images)."""
        with self._tx() as conn:
            conn.executemany(
                "DELETE FROM pending WHERE message_id = ? AND attachment_id = ?",
                [ref.key for ref in refs],
            )

    def record_failure(self, refs: Iterable[ImageRef], max_attempts: int = 3) -> int:
        """Count a failed attempt for each ref; drop those that reached ``max_attempts``.

        Returns how many were dropped.
        """
        keys = [ref.key for ref in refs]
        with self._tx() as conn:
            conn.executemany(
                "UPDATE pending SET attempts = attempts + 1 "
                "WHERE message_id = ? AND attachment_id = ?",
                keys,
            )
            cur = conn.execute("DELETE FROM pending WHERE attempts >= ?", (max_attempts,))
            return max(cur.rowcount, 0)

    # -- storing embeddings ----------------------------------------------------------------

    def embedding_for_hash(self, content_hash: str) -> npt.NDArray[np.float32] | None:
        """An embedding (current model) of identical content already stored, if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT dim, embedding FROM images WHERE content_hash = ? AND model_id = ? LIMIT 1",
                (content_hash, self.model_id),
            ).fetchone()
        if row is None or len(row[1]) != 4 * row[0]:
            return None
        return np.frombuffer(row[1], np.float32).copy()

    def add(self, items: Iterable[tuple[ImageRef, str, npt.ArrayLike]]) -> int:
        """Store embeddings (upsert by message and attachment) and take them off pending.

        One transaction; then prunes the touched channels to the newest ``per_channel`` rows and
        applies retention. Returns how many rows were written (a ref given twice counts once).
        """
        batch: dict[Key, tuple[ImageRef, str, npt.NDArray[np.float32]]] = {}
        for ref, content_hash, embedding in items:
            vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
            batch[ref.key] = (ref, content_hash, vec)
        if not batch:
            return 0
        dims = {vec.shape[0] for _, _, vec in batch.values()}
        dim = self._vectors.dim
        if len(dims) > 1 or (dim is not None and dims != {dim}):
            raise ValueError(f"embeddings of dim {sorted(dims)} for an index of dim {dim}")
        (new_dim,) = dims
        matrix = np.stack([vec for _, _, vec in batch.values()])
        if not np.isfinite(matrix).all():
            raise ValueError("embeddings must be finite")
        rows = [
            (*_ref_params(ref), content_hash, self.model_id, new_dim, vec.tobytes())
            for (ref, content_hash, _), vec in zip(batch.values(), matrix, strict=True)
        ]
        with self._tx() as conn:
            conn.executemany(
                f"INSERT INTO images ({_REF_COLS}, content_hash, model_id, dim, embedding) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (message_id, attachment_id) DO UPDATE SET "
                "guild_id = excluded.guild_id, channel_id = excluded.channel_id, "
                "parent_id = excluded.parent_id, author_id = excluded.author_id, "
                "created_at = excluded.created_at, content_hash = excluded.content_hash, "
                "model_id = excluded.model_id, dim = excluded.dim, "
                "embedding = excluded.embedding",
                rows,
            )
            conn.executemany(
                "DELETE FROM pending WHERE message_id = ? AND attachment_id = ?", list(batch)
            )
            gone: list[Key] = []
            for channel_id in {ref.channel_id for ref, _, _ in batch.values()}:
                self._prune_channel(conn, channel_id, gone)
            self._prune_retention(conn, self._clock(), gone)
        self._vectors.add([ref for ref, _, _ in batch.values()], matrix)
        self._vectors.remove(gone)
        return len(batch)

    # -- removal ---------------------------------------------------------------------------

    def _remove_where(self, where: str, params: Iterable[tuple[Any, ...]]) -> int:
        """Delete rows matching ``where`` for each parameter tuple from both tables, in one
        transaction; returns how many."""
        gone: list[Key] = []
        removed = 0
        with self._tx() as conn:
            for args in params:
                rows = conn.execute(
                    f"DELETE FROM images WHERE {where} RETURNING message_id, attachment_id", args
                ).fetchall()
                gone.extend((m, a) for m, a in rows)
                removed += (
                    len(rows) + conn.execute(f"DELETE FROM pending WHERE {where}", args).rowcount
                )
        self._vectors.remove(gone)
        return removed

    def remove_messages(self, message_ids: Iterable[int]) -> int:
        """Remove every image of these messages (indexed or pending); returns how many."""
        return self._remove_where("message_id = ?", [(m,) for m in set(message_ids)])

    def keep_only_attachments(self, message_id: int, attachment_ids: Collection[int]) -> int:
        """After an edit: remove the message's images whose attachment is not listed."""
        keep = sorted(set(attachment_ids))
        marks = ", ".join("?" * len(keep))
        where = f"message_id = ? AND attachment_id NOT IN ({marks})" if keep else "message_id = ?"
        return self._remove_where(where, [(message_id, *keep)])

    def remove_channel(self, channel_id: int) -> int:
        """Remove a channel's images, including those of threads whose parent it is."""
        return self._remove_where("channel_id = ? OR parent_id = ?", [(channel_id, channel_id)])

    def remove_guild(self, guild_id: int) -> int:
        return self._remove_where("guild_id = ?", [(guild_id,)])

    def forget_author(self, guild_id: int | None, author_id: int) -> int:
        """Remove an author's images in one guild (``None``: in DMs); indexed + pending."""
        return self._remove_where("guild_id IS ? AND author_id = ?", [(guild_id, author_id)])

    # -- pruning ---------------------------------------------------------------------------

    def _retention_cutoff(self, now: float | None = None) -> float | None:
        if not self.retention_days:
            return None
        return (self._clock() if now is None else now) - self.retention_days * _DAY

    def _channel_floor(self, channel_id: int) -> Key | None:
        """The oldest key a full channel keeps (None while it holds fewer than per_channel)."""
        row = self._conn.execute(
            "SELECT message_id, attachment_id FROM images WHERE channel_id = ? "
            "ORDER BY message_id DESC, attachment_id DESC LIMIT 1 OFFSET ?",
            (channel_id, self.per_channel - 1),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _prune_channel(self, conn: sqlite3.Connection, channel_id: int, gone: list[Key]) -> int:
        floor = self._channel_floor(channel_id)
        if floor is None:
            return 0
        older = "channel_id = ? AND (message_id, attachment_id) < (?, ?)"
        rows = conn.execute(
            f"DELETE FROM images WHERE {older} RETURNING message_id, attachment_id",
            (channel_id, *floor),
        ).fetchall()
        gone.extend((m, a) for m, a in rows)
        return (
            len(rows)
            + conn.execute(f"DELETE FROM pending WHERE {older}", (channel_id, *floor)).rowcount
        )

    def _prune_retention(self, conn: sqlite3.Connection, now: float, gone: list[Key]) -> int:
        cutoff = self._retention_cutoff(now)
        if cutoff is None:
            return 0
        rows = conn.execute(
            "DELETE FROM images WHERE created_at < ? RETURNING message_id, attachment_id",
            (cutoff,),
        ).fetchall()
        gone.extend((m, a) for m, a in rows)
        return (
            len(rows) + conn.execute("DELETE FROM pending WHERE created_at < ?", (cutoff,)).rowcount
        )

    def prune(self, now: float | None = None) -> int:
        """Apply retention and the per-channel bound everywhere; returns rows removed."""
        gone: list[Key] = []
        with self._tx() as conn:
            full = conn.execute(
                "SELECT channel_id FROM images GROUP BY channel_id HAVING COUNT(*) >= ?",
                (self.per_channel,),
            ).fetchall()
            removed = sum(self._prune_channel(conn, channel_id, gone) for (channel_id,) in full)
            removed += self._prune_retention(conn, self._clock() if now is None else now, gone)
        self._vectors.remove(gone)
        return removed

    # -- queries ---------------------------------------------------------------------------

    def search(self, query: npt.ArrayLike, channel_ids: Collection[int], top: int = 1) -> list[Hit]:
        """The ``top`` images most similar to ``query`` among ``channel_ids``, best first."""
        with self._lock:
            return self._vectors.search(query, channel_ids, top)

    def count(self, channel_ids: Collection[int] | None = None) -> int:
        """Searchable images (current model), optionally only in these channels."""
        with self._lock:
            return self._vectors.count(channel_ids)

    def contains(self, message_id: int, attachment_id: int) -> bool:
        """Whether this image is indexed and searchable (embedded by the current model)."""
        with self._lock:
            return (message_id, attachment_id) in self._vectors

    def last_message_id(self, channel_id: int) -> int | None:
        """The newest message id indexed (any model) or pending in the channel."""
        with self._lock:
            (newest,) = self._conn.execute(
                "SELECT MAX(m) FROM ("
                "SELECT MAX(message_id) AS m FROM images WHERE channel_id = ? UNION ALL "
                "SELECT MAX(message_id) FROM pending WHERE channel_id = ?)",
                (channel_id, channel_id),
            ).fetchone()
        return None if newest is None else int(newest)

    def channels(self) -> list[tuple[int | None, int]]:
        """(guild_id, channel_id) of every channel with indexed or pending images."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT guild_id, channel_id FROM ("
                "SELECT c.channel_id, (SELECT guild_id FROM images i WHERE "
                "i.channel_id = c.channel_id LIMIT 1) AS guild_id "
                "FROM (SELECT DISTINCT channel_id FROM images) c "
                "UNION ALL SELECT channel_id, guild_id FROM pending) ORDER BY channel_id"
            ).fetchall()
        return [(guild, channel) for guild, channel in rows]

    def stale_model_refs(self) -> list[ImageRef]:
        """Refs embedded by another model: kept, never searched, to be re-embedded."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_REF_COLS} FROM images WHERE model_id < ? OR model_id > ? "
                "ORDER BY message_id, attachment_id",
                (self.model_id, self.model_id),
            ).fetchall()
        return [_ref(row) for row in rows]

    def requeue_stale(self) -> int:
        """Move every row of another model back to pending; returns how many."""
        other = "model_id < ? OR model_id > ?"
        with self._tx() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO pending ({_REF_COLS}) "
                f"SELECT {_REF_COLS} FROM images WHERE {other}",
                (self.model_id, self.model_id),
            )
            moved = conn.execute(
                f"DELETE FROM images WHERE {other}", (self.model_id, self.model_id)
            ).rowcount
        return int(moved)


def _channel_filter(channel_ids: Collection[int] | None) -> tuple[str, tuple[int, ...]]:
    if channel_ids is None:
        return "", ()
    ids = tuple(set(channel_ids))
    if not ids:
        return "WHERE 0", ()
    return f"WHERE channel_id IN ({', '.join('?' * len(ids))})", ids
