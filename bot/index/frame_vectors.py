"""Images with one embedding per frame: an animation's score is its best frame's.

`first` holds the first embedded frame of every image (a still image's only one); `more[k]`
holds frame k + 1 of the images that have it, so only animations cost more than one row and
a search over still images runs exactly as before. A query may itself have several rows (an
example image's frames): an image then scores its best pair of frames.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from bot.index.refs import Hit, ImageRef, Key
from bot.index.vectors import VectorStore


class FrameVectors:
    def __init__(self, first: VectorStore | None = None) -> None:
        self.first = first or VectorStore()
        self.more: list[VectorStore] = []

    @property
    def dim(self) -> int | None:
        return self.first.dim

    def __len__(self) -> int:
        return len(self.first)

    def __contains__(self, key: object) -> bool:
        return key in self.first

    def count(self, channel_ids: Collection[int] | None = None) -> int:
        return self.first.count(channel_ids)

    def add(self, refs: Sequence[ImageRef], frames: Sequence[npt.NDArray[np.float32]]) -> None:
        """Insert or replace images, each with its (frames, dim) matrix."""
        if not refs:
            return
        self.first.add(refs, np.stack([matrix[0] for matrix in frames]))
        depth = max(len(matrix) for matrix in frames)
        while len(self.more) < depth - 1:
            self.more.append(VectorStore(self.first.dim))
        for k, store in enumerate(self.more, 1):
            having = [i for i, matrix in enumerate(frames) if len(matrix) > k]
            # A replaced image may have fewer frames than before: its old extra rows go.
            store.remove(ref.key for i, ref in enumerate(refs) if len(frames[i]) <= k)
            if having:
                store.add([refs[i] for i in having], np.stack([frames[i][k] for i in having]))

    def remove(self, keys: Iterable[Key]) -> int:
        keys = set(keys)
        for store in self.more:
            store.remove(keys)
        return self.first.remove(keys)

    def search(self, query: npt.ArrayLike, channel_ids: Collection[int], top: int) -> list[Hit]:
        """The ``top`` best images, each scored by its best frame against the best query row.

        Each store's own top ``top`` is enough: an image among the best ``top`` has its best
        frame in some store, where fewer than ``top`` rows can beat it."""
        hits = [
            hit
            for q in _rows(query)
            for store in self._stores()
            for hit in store.search(q, channel_ids, top)
        ]
        return _best(hits)[:top]

    def above(
        self, query: npt.ArrayLike, channel_ids: Collection[int], min_score: float
    ) -> list[Hit]:
        """Every image with a frame at least ``min_score`` from a query row, best first."""
        hits = [
            hit
            for q in _rows(query)
            for store in self._stores()
            for hit in store.above(q, channel_ids, min_score)
        ]
        return _best(hits)

    def scores(
        self, query: npt.ArrayLike, keys: Collection[Key], top: int | None = None
    ) -> list[Hit]:
        """The ``top`` best of these images (those held), each scored by its best frame
        against the best query row; best first."""
        queries = _rows(query)
        best: dict[Key, float] = {}
        for store in self._stores():
            found, vectors = store.vectors_of(keys)
            if found:
                scores = (vectors @ queries.T).max(axis=1).tolist()
                for key, score in zip(found, scores, strict=True):
                    best[key] = max(score, best.get(key, score))
        chosen = sorted(best.items(), key=lambda item: (-item[1], -item[0][0], -item[0][1]))
        return [Hit(self.first.ref_of(key), score) for key, score in chosen[:top]]

    def _stores(self) -> list[VectorStore]:
        return [self.first, *(store for store in self.more if len(store))]


def _rows(query: npt.ArrayLike) -> npt.NDArray[np.float32]:
    matrix = np.asarray(query, dtype=np.float32)
    return matrix.reshape(1, -1) if matrix.ndim == 1 else matrix


def _best(hits: Iterable[Hit]) -> list[Hit]:
    """One hit per image, its best; best first, ties to the newer message."""
    best: dict[Key, Hit] = {}
    for hit in hits:
        kept = best.get(hit.ref.key)
        if kept is None or hit.score > kept.score:
            best[hit.ref.key] = hit
    return sorted(best.values(), key=lambda h: (-h.score, -h.ref.message_id, -h.ref.attachment_id))
