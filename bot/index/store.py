"""The index's thread-side core: SQLite rows and the in-memory vectors, kept consistent.

Synchronous; every call comes through `bot.index.image_index.ImageIndex` on one worker thread.
Every change runs in one transaction, so a process killed at any point leaves each upload either
indexed or still pending. Only rows embedded by the current ``model_id`` are loaded into memory
and searched; rows of any other model are kept (and re-queued by :meth:`requeue_stale`) but never
mixed into a search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.index import queries, removal
from bot.index.alt_text import alt_words
from bot.index.channel_settings import ChannelSettings
from bot.index.described import Described
from bot.index.frame_vectors import FrameVectors
from bot.index.lookups import Lookups
from bot.index.members import Members
from bot.index.refs import EMBED_KEYS_FROM, REF_COLUMNS, SNOWFLAKES_FROM, ImageRef, Key, ref_params

log = logging.getLogger(__name__)

_THIS_KEY = "message_id = ? AND attachment_id = ?"
_REQUEUE = (
    f"INSERT OR IGNORE INTO pending ({REF_COLUMNS}, alt_text) "
    f"SELECT {REF_COLUMNS}, alt_text FROM images WHERE "
)
# A ref, its content hash, its embedding: one row, or one per frame (frames, dim).
Embedded = tuple[ImageRef, str, npt.ArrayLike]
# The newest message seen in a channel: (channel_id, guild_id, parent_id, message_id).
ReadMark = tuple[int, int, int | None, int]


class IndexStore(Lookups, ChannelSettings, Described, Members):
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
        super().__init__(Path(path))
        self.model_id = model_id
        self.per_channel = per_channel
        self.retention_days = retention_days
        self._clock = clock
        self._vectors = FrameVectors()
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        """Fill the matrix with the current model's rows; re-queue rows of a bad size."""
        with self._lock:
            self._vectors, bad = queries.load_vectors(self._conn, self.model_id)
            self._read_members(self._conn)
            self._read_settings(self._conn)
        if bad:
            log.warning("image index: re-queueing %d rows with a bad embedding size", len(bad))
            with self._tx() as conn:
                for key in bad:
                    conn.execute(_REQUEUE + _THIS_KEY, key)
                    conn.execute(f"DELETE FROM images WHERE {_THIS_KEY}", key)

    # -- pending work ----------------------------------------------------------------------

    def add_pending(
        self, refs: Iterable[ImageRef], alt_texts: Mapping[Key, str | None] | None = None
    ) -> list[ImageRef]:
        """Queue uploads to embed, with their alt text; returns those that were new.

        Skips refs already pending or indexed for the current model, refs older than the
        retention window, and refs older than everything kept in a channel that is already full
        (they would be pruned as soon as they were added). A ref indexed by another model moves
        back to pending.
        """
        cutoff = removal.retention_cutoff(self._clock(), self.retention_days)
        added: list[ImageRef] = []
        gone: list[Key] = []
        with self._tx() as conn:
            floors: dict[int, Key | None] = {}
            for ref in refs:
                key = ref.key
                if key in self._vectors or (cutoff is not None and ref.created_at < cutoff):
                    continue
                if self.keeps_out(ref.guild_id, ref.author_id, ref.message_id):
                    continue
                if EMBED_KEYS_FROM <= key[1] < SNOWFLAKES_FROM:
                    # An older version keyed the message's previews by position, which an edit
                    # may have moved: they go, and come back under their addresses' keys.
                    where = "message_id = ? AND attachment_id < ?"
                    removal.delete_where(conn, where, [(ref.message_id, EMBED_KEYS_FROM)], gone)
                if ref.channel_id not in floors:
                    floors[ref.channel_id] = removal.channel_floor(
                        conn, ref.channel_id, self.per_channel
                    )
                floor = floors[ref.channel_id]
                if floor is not None and key < floor:
                    continue
                cur = conn.execute(
                    f"INSERT OR IGNORE INTO pending ({REF_COLUMNS}, alt_text) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*ref_params(ref), (alt_texts or {}).get(key)),
                )
                if cur.rowcount:
                    added.append(ref)
                    # Indexed by another model (the current one is in memory): re-embed it.
                    conn.execute(f"DELETE FROM images WHERE {_THIS_KEY}", key)
        self._vectors.remove(gone)
        return added

    def drop_pending(self, refs: Iterable[ImageRef]) -> None:
        """Forget queued refs (refused or vanished images)."""
        with self._tx() as conn:
            conn.executemany(f"DELETE FROM pending WHERE {_THIS_KEY}", [r.key for r in refs])

    def record_failure(self, refs: Iterable[ImageRef], max_attempts: int = 3) -> int:
        """Count a failed attempt for each ref; drop (and return how many) reached the limit."""
        with self._tx() as conn:
            conn.executemany(
                f"UPDATE pending SET attempts = attempts + 1 WHERE {_THIS_KEY}",
                [ref.key for ref in refs],
            )
            cur = conn.execute("DELETE FROM pending WHERE attempts >= ?", (max_attempts,))
            return max(cur.rowcount, 0)

    def requeue_stale(self) -> int:
        """Move every row of another model back to pending; returns how many."""
        other, model = "model_id < ? OR model_id > ?", (self.model_id, self.model_id)
        with self._tx() as conn:
            conn.execute(_REQUEUE + other, model)
            return int(conn.execute(f"DELETE FROM images WHERE {other}", model).rowcount)

    # -- embeddings ------------------------------------------------------------------------

    def add(self, items: Iterable[Embedded]) -> int:
        """Store the embeddings of images that are still queued, and take them off the queue.

        An image removed while it was being embedded (deleted, edited away, forgotten, pruned)
        is no longer pending, so its late embedding is dropped: deleted stays deleted. One
        transaction; then prunes the touched channels to the newest ``per_channel`` rows and
        applies retention. Returns how many were written (a ref given twice counts once).
        """
        batch = {ref.key: (ref, digest, _frames(vector)) for ref, digest, vector in items}
        if not batch:
            return 0
        dims = {frames.shape[1] for _, _, frames in batch.values()}
        dim = self._vectors.dim
        if len(dims) > 1 or (dim is not None and dims != {dim}):
            raise ValueError(f"embeddings of dim {sorted(dims)} for an index of dim {dim}")
        if not all(np.isfinite(frames).all() for _, _, frames in batch.values()):
            raise ValueError("embeddings must be finite")
        gone: list[Key] = []
        written: list[tuple[ImageRef, npt.NDArray[np.float32]]] = []
        with self._tx() as conn:
            rows = []
            for ref, digest, frames in batch.values():
                taken = conn.execute(
                    f"DELETE FROM pending WHERE {_THIS_KEY} RETURNING alt_text", ref.key
                ).fetchall()
                if not taken:
                    continue
                written.append((ref, frames))
                (alt,), (count, width) = taken[0], frames.shape
                embedding = (digest, self.model_id, width, frames.tobytes(), count)
                rows.append((*ref_params(ref), *embedding, alt, alt_words(alt)))
            conn.executemany(
                f"INSERT OR REPLACE INTO images ({REF_COLUMNS}, content_hash, model_id, dim, "
                "embedding, frames, alt_text, alt_words) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if written:
                for channel_id in {ref.channel_id for ref, _ in written}:
                    removal.prune_channel(conn, channel_id, self.per_channel, gone)
                cutoff = removal.retention_cutoff(self._clock(), self.retention_days)
                removal.prune_retention(conn, cutoff, gone)
        self._vectors.add([ref for ref, _ in written], [frames for _, frames in written])
        self._vectors.remove(gone)
        return len(written)

    def mark_read(self, marks: Iterable[ReadMark]) -> None:
        """Where a catch-up may stop reading each channel; a mark never moves back."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO read_marks (channel_id, guild_id, parent_id, message_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (channel_id) DO UPDATE SET "
                "message_id = MAX(message_id, excluded.message_id)",
                marks,
            )

    # -- removal ---------------------------------------------------------------------------

    def _remove_where(
        self,
        where: str,
        params: list[tuple[object, ...]],
        settings: str | None = None,
        *,
        read_marks: bool = False,
    ) -> int:
        """Delete matching rows from both tables in one transaction; with `settings` (a channel
        or server gone), the channel settings matching it with the same parameters and the
        descriptions and read marks matching `where`. Returns how many images."""
        gone: list[Key] = []
        with self._tx() as conn:
            removed = removal.delete_where(conn, where, params, gone)
            if settings is not None:
                self._forget_settings(conn, settings, params)
                conn.executemany(f"DELETE FROM descriptions WHERE {where}", params)
            if settings is not None or read_marks:
                conn.executemany(f"DELETE FROM read_marks WHERE {where}", params)
        if settings is not None:
            self._reread_settings()
        self._vectors.remove(gone)
        return removed

    def remove_messages(self, message_ids: Iterable[int]) -> int:
        """Remove every image of these messages (indexed or pending); returns how many."""
        return self._remove_where("message_id = ?", [(m,) for m in set(message_ids)])

    def remove_images(self, keys: Iterable[Key]) -> int:
        """Remove these images (a search found them no longer in their message)."""
        return self._remove_where(f"{_THIS_KEY}", [tuple(key) for key in set(keys)])

    def keep_only_attachments(self, message_id: int, attachment_ids: Collection[int]) -> int:
        """After an edit: remove the message's images whose attachment is not listed."""
        keep = sorted(set(attachment_ids))
        marks = ", ".join("?" * len(keep))
        where = f"message_id = ? AND attachment_id NOT IN ({marks})" if keep else "message_id = ?"
        return self._remove_where(where, [(message_id, *keep)])

    def set_alt_texts(self, message_id: int, alt_texts: Mapping[int, str | None]) -> int:
        """After an edit: the alt text each image of the message has now (by attachment id);
        returns how many entries changed."""
        changed = 0
        with self._tx() as conn:
            for attachment_id, text in alt_texts.items():
                text = text or None
                at = (message_id, attachment_id, text)
                changed += conn.execute(
                    f"UPDATE images SET alt_text = ?, alt_words = ? WHERE {_THIS_KEY} "
                    "AND alt_text IS NOT ?",
                    (text, alt_words(text), *at),
                ).rowcount
                changed += conn.execute(
                    f"UPDATE pending SET alt_text = ? WHERE {_THIS_KEY} AND alt_text IS NOT ?",
                    (text, *at),
                ).rowcount
        return changed

    def remove_channel(self, channel_id: int) -> int:
        """Remove a channel's images, those of threads whose parent it is, and its settings."""
        where, twice = "channel_id = ? OR parent_id = ?", (channel_id, channel_id)
        return self._remove_where(where, [twice], settings="channel_id = ? OR channel_id = ?")

    def remove_ignored(self, channel_ids: Collection[int]) -> int:
        """The images and read marks of channels now in IGNORE_CHANNELS, their threads' too;
        their settings stay, for when they are no longer ignored."""
        params: list[tuple[object, ...]] = [(channel, channel) for channel in channel_ids]
        where = "channel_id = ? OR parent_id = ?"
        return self._remove_where(where, params, read_marks=True) if params else 0

    def remove_guild(self, guild_id: int) -> int:
        return self._remove_where("guild_id = ?", [(guild_id,)], settings="guild_id = ?")

    def prune(self, now: float | None = None) -> int:
        """Apply retention and the per-channel bound everywhere; returns rows removed."""
        now = self._clock() if now is None else now
        cutoff = removal.retention_cutoff(now, self.retention_days)
        gone: list[Key] = []
        with self._tx() as conn:
            removed = removal.prune_all(conn, self.per_channel, cutoff, gone)
        self._vectors.remove(gone)
        return removed


def _frames(vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """One row per frame: a single embedding is a still image's one frame."""
    array = np.asarray(vector, dtype=np.float32)
    return np.ascontiguousarray(array.reshape(1, -1) if array.ndim < 2 else array)
