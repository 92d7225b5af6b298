"""The in-memory half of the image index: a float32 matrix of embeddings and top-k search.

Rows live in one C-contiguous ``(capacity, dim)`` matrix with parallel numpy arrays of row
metadata. The matrix is always compact (rows ``[0, n)`` are live): removal fills the holes with
rows moved from the tail, so there is never a full rebuild and no dead rows to skip. Growth is
geometric (x1.25), so appends are amortised O(1) and spare capacity stays small.

Channel ids are mapped to small dense codes, so restricting a search to a set of channels is one
table lookup per row (the same result as ``np.isin`` on the channel ids, several times faster).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from bot.index.refs import Hit, ImageRef, Key

_GROWTH = 1.25
_MIN_GROW = 1024
_GATHER_CHUNK = 2048  # rows copied at a time when scoring a subset (4 MiB at dim 512)
_NONE = 0  # stands for a missing guild or parent id in the int64 arrays (snowflakes are > 0)
_ID_COLUMNS = 6  # message, attachment, channel, guild, parent, author
_MSG, _ATT = 0, 1


class VectorStore:
    """Embeddings of one model, with their refs, searchable by channel."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self._n = 0
        self._mat: npt.NDArray[np.float32] = np.empty((0, dim or 0), np.float32)
        self._ids = np.empty((0, _ID_COLUMNS), np.int64)  # MSG, ATT, CHAN, GUILD, PARENT, AUTHOR
        self._created = np.empty(0, np.float64)
        self._code = np.empty(0, np.int32)  # dense code of each row's channel
        self._codes: dict[int, int] = {}  # channel_id -> code
        self._pos: dict[Key, int] = {}  # key -> row

    def __len__(self) -> int:
        return self._n

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` rows (never drops live rows)."""
        capacity = max(capacity, self._n)
        if capacity == len(self._ids) or self.dim is None:
            return
        n = self._n
        mat = np.empty((capacity, self.dim), np.float32)
        mat[:n] = self._mat[:n]
        ids = np.empty((capacity, _ID_COLUMNS), np.int64)
        ids[:n] = self._ids[:n]
        created = np.empty(capacity, np.float64)
        created[:n] = self._created[:n]
        code = np.empty(capacity, np.int32)
        code[:n] = self._code[:n]
        self._mat, self._ids, self._created, self._code = mat, ids, created, code

    def add(self, refs: Sequence[ImageRef], vectors: npt.ArrayLike) -> None:
        """Insert or replace rows; for a key given twice the last one wins."""
        if not refs:
            return
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(refs):
            raise ValueError(f"expected {len(refs)} vectors, got an array of shape {vecs.shape}")
        if self.dim is None:
            self.dim = int(vecs.shape[1])
            self._mat = np.empty((0, self.dim), np.float32)
        elif vecs.shape[1] != self.dim:
            raise ValueError(f"embedding has dim {vecs.shape[1]}, the index holds dim {self.dim}")
        last = {(r.message_id, r.attachment_id): i for i, r in enumerate(refs)}
        take = np.fromiter(last.values(), np.int64, len(last))
        positions = np.empty(len(last), np.int64)
        n = self._n
        where = self._pos
        new_keys: list[Key] = []
        for j, key in enumerate(last):
            pos = where.get(key)
            if pos is None:
                pos = n + len(new_keys)
                new_keys.append(key)
            positions[j] = pos
        capacity = len(self._ids)
        if n + len(new_keys) > capacity:
            grown = max(n + len(new_keys), int(capacity * _GROWTH), capacity + _MIN_GROW)
            self.reserve(grown)
        chosen = [refs[i] for i in take.tolist()]
        codes = self._codes
        self._mat[positions] = vecs[take]
        self._ids[positions] = [
            (
                r.message_id,
                r.attachment_id,
                r.channel_id,
                r.guild_id or _NONE,
                r.parent_id or _NONE,
                r.author_id,
            )
            for r in chosen
        ]
        self._created[positions] = [r.created_at for r in chosen]
        self._code[positions] = [codes.setdefault(r.channel_id, len(codes)) for r in chosen]
        # Published last: where growing fails (no memory), the store stays as it was. Keys
        # recorded before would point past the live rows, and removing one would move others.
        where.update(zip(new_keys, range(n, n + len(new_keys)), strict=True))
        self._n = n + len(new_keys)

    def remove(self, keys: Iterable[Key]) -> int:
        """Remove rows by key (unknown keys are ignored); returns how many were removed.

        The holes are filled with rows moved from the tail, so rows [0, n) stay live.
        """
        gone = [self._pos.pop(key) for key in set(keys) if key in self._pos]
        if not gone:
            return 0
        n = self._n
        new_n = n - len(gone)
        removed = np.zeros(n, bool)
        removed[gone] = True
        holes = np.flatnonzero(removed[:new_n])
        movers = np.flatnonzero(~removed[new_n:]) + new_n
        if holes.size:
            self._mat[holes] = self._mat[movers]
            self._ids[holes] = self._ids[movers]
            self._created[holes] = self._created[movers]
            self._code[holes] = self._code[movers]
            moved = self._ids[holes, :2].tolist()
            for hole, (msg, att) in zip(holes.tolist(), moved, strict=True):
                self._pos[(msg, att)] = hole
        self._n = new_n
        if len(self._ids) > 2 * new_n + _MIN_GROW:
            self.reserve(int(new_n * _GROWTH) + _MIN_GROW)
        return len(gone)

    def ref(self, row: int) -> ImageRef:
        msg, att, chan, guild, parent, author = self._ids[row].tolist()
        return ImageRef(
            guild_id=None if guild == _NONE else guild,
            channel_id=chan,
            message_id=msg,
            attachment_id=att,
            author_id=author,
            created_at=float(self._created[row]),
            parent_id=None if parent == _NONE else parent,
        )

    def _rows_in(self, channel_ids: Collection[int]) -> npt.NDArray[np.intp]:
        codes = [self._codes[c] for c in set(channel_ids) if c in self._codes]
        if not codes or self._n == 0:
            return np.empty(0, np.intp)
        allowed = np.zeros(len(self._codes), bool)
        allowed[codes] = True
        return np.flatnonzero(allowed[self._code[: self._n]])

    def count(self, channel_ids: Collection[int] | None = None) -> int:
        if channel_ids is None:
            return self._n
        return int(self._rows_in(channel_ids).size)

    def search(self, query: npt.ArrayLike, channel_ids: Collection[int], top: int = 1) -> list[Hit]:
        """Top ``top`` rows by dot product among rows in ``channel_ids``, best first.

        Ties are broken by newer message, then higher attachment id.
        """
        if top < 1 or self.dim is None or self._n == 0:
            return []
        q = self._query(query)
        rows = self._rows_in(channel_ids)
        if rows.size == 0:
            return []
        scores = self._scores(q, rows)
        k = min(top, rows.size)
        if k < rows.size:
            kth = scores[np.argpartition(scores, rows.size - k)[rows.size - k]]
            candidates = np.flatnonzero(scores >= kth)
        else:
            candidates = np.arange(rows.size)
        cand_rows = rows[candidates]
        cand_scores = scores[candidates]
        ids = self._ids[cand_rows]
        order = np.lexsort((-ids[:, _ATT], -ids[:, _MSG], -cand_scores))[:k]
        return [Hit(self.ref(int(cand_rows[i])), float(cand_scores[i])) for i in order.tolist()]

    def above(
        self, query: npt.ArrayLike, channel_ids: Collection[int], min_score: float
    ) -> list[Hit]:
        """Every row in ``channel_ids`` whose dot product with ``query`` is at least
        ``min_score``, in no particular order."""
        if self.dim is None or self._n == 0:
            return []
        rows = self._rows_in(channel_ids)
        if rows.size == 0:
            return []
        scores = self._scores(self._query(query), rows)
        chosen = np.flatnonzero(scores >= min_score)
        return [Hit(self.ref(int(rows[i])), float(scores[i])) for i in chosen.tolist()]

    def vectors_of(self, keys: Iterable[Key]) -> tuple[list[Key], npt.NDArray[np.float32]]:
        """The keys held among these, and their vectors."""
        found = [key for key in keys if key in self._pos]
        return found, self._mat[[self._pos[key] for key in found]]

    def ref_of(self, key: Key) -> ImageRef:
        return self.ref(self._pos[key])

    def _query(self, query: npt.ArrayLike) -> npt.NDArray[np.float32]:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has dim {q.shape[0]}, the index holds dim {self.dim}")
        return q

    def _scores(self, q: npt.NDArray[np.float32], rows: npt.NDArray[np.intp]) -> npt.NDArray:
        """The dot product of ``q`` with each of ``rows``."""
        # np.vecdot runs on the calling thread, one BLAS dot product per row: every row is
        # summed the same way wherever it lies, so equal images score equally and ties fall
        # to the newer message. A matrix product (BLAS sgemv) took 10-20 ms against 20 at
        # 100,000 rows of 512 but scored equal rows differently by position, and on a busy
        # 2-core host its worker threads fight the model's; np.einsum took 26-33 ms.
        if rows.size * 3 < self._n:
            # A small subset: copy its rows in cache-sized chunks and score only those.
            scores = np.empty(rows.size, np.float32)
            for start in range(0, rows.size, _GATHER_CHUNK):
                chunk = rows[start : start + _GATHER_CHUNK]
                scores[start : start + chunk.size] = np.vecdot(self._mat[chunk], q)
            return scores
        # Most rows: one streaming pass over the live block beats gathering.
        return np.vecdot(self._mat[: self._n], q)[rows]
