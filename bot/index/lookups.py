"""The index's read side on the db thread: what is queued, searches, and what is known where.

`bot.index.store.IndexStore` adds the writes; both keep to its lock, and read only rows of the
current ``model_id``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from bot.index import queries, ranking
from bot.index.alt_text import Terms
from bot.index.database import Database
from bot.index.frame_vectors import FrameVectors
from bot.index.ranking import Earlier, Excluded
from bot.index.refs import Hit, ImageRef, Key


class Lookups(Database):
    model_id: str
    _vectors: FrameVectors

    # -- the queue ---------------------------------------------------------------------------

    def pending(
        self, limit: int = 64, channel_ids: Collection[int] | None = None
    ) -> list[ImageRef]:
        """Up to ``limit`` queued refs, oldest message first."""
        with self._lock:
            return queries.pending(self._conn, limit, channel_ids)

    def pending_count(
        self, channel_ids: Collection[int] | None = None, skipping: Collection[Key] = ()
    ) -> int:
        with self._lock:
            return queries.pending_count(self._conn, channel_ids, skipping)

    def pending_up_to(self, channel_ids: Collection[int], message_id: int) -> int:
        with self._lock:
            return queries.pending_up_to(self._conn, channel_ids, message_id)

    def pending_among(self, keys: Collection[Key]) -> int:
        """How many of these images are still queued."""
        with self._lock:
            return queries.pending_among(self._conn, keys)

    # -- embeddings --------------------------------------------------------------------------

    def embedding_for_hash(
        self, content_hash: str, channel_ids: Collection[int]
    ) -> npt.NDArray[np.float32] | None:
        """The (frames, dim) embedding (current model) of identical content stored in these
        channels, if any."""
        with self._lock:
            found = queries.embeddings_for_hashes(
                self._conn, [content_hash], self.model_id, channel_ids
            )
        return found.get(content_hash)

    def embeddings_for_hashes(
        self, content_hashes: Collection[str]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Those of these contents that are stored, by hash: one query for a whole batch."""
        with self._lock:
            return queries.embeddings_for_hashes(self._conn, content_hashes, self.model_id)

    def of_message(self, message_id: int) -> dict[Key, tuple[str, npt.NDArray[np.float32]]]:
        """Each indexed image of the message: its content hash and (frames, dim) embedding."""
        with self._lock:
            return queries.of_message(self._conn, message_id, self.model_id)

    # -- searches ----------------------------------------------------------------------------

    def search(
        self,
        query: npt.ArrayLike,
        channel_ids: Collection[int],
        top: int = 1,
        *,
        terms: Terms = (),
        excluded: Excluded | None = None,
    ) -> list[Hit]:
        """The ``top`` images most similar to ``query`` among ``channel_ids``, best first (see
        bot.index.ranking for alt text ``terms`` and an ``excluded`` example)."""
        with self._lock:
            return ranking.rank(
                self._conn, self._vectors, self.model_id, query, channel_ids, top, terms, excluded
            )

    def earlier(
        self,
        content_hash: str,
        frames: npt.ArrayLike,
        channel_ids: Collection[int],
        before: int,
        min_score: float,
    ) -> list[Earlier]:
        """Images of these channels, posted before message ``before``, that this one repeats."""
        with self._lock:
            return ranking.earlier(
                self._conn, self._vectors, self.model_id, content_hash, frames,
                channel_ids, before, min_score,
            )  # fmt: skip

    def count(self, channel_ids: Collection[int] | None = None) -> int:
        """Searchable images (current model), optionally only in these channels."""
        with self._lock:
            return self._vectors.count(channel_ids)

    # -- where images are --------------------------------------------------------------------

    def last_message_id(
        self, channel_id: int, before: int | None = None, *, server: bool = False
    ) -> int | None:
        """Where a catch-up stops reading the channel: the newest message the bot saw there
        with nothing unread below it, or without such a mark its newest message id indexed
        (any model) or pending (below `before`, if given). With `server`, of the whole server
        whose ID `channel_id` then is."""
        with self._lock:
            return queries.last_message_id(self._conn, channel_id, before, server=server)

    def is_thread(self, channel_id: int) -> bool:
        with self._lock:
            return queries.is_thread(self._conn, channel_id)

    def threads_under(self, parent_ids: Collection[int]) -> list[tuple[int, int]]:
        with self._lock:
            return queries.threads_under(self._conn, parent_ids)

    def guilds(self) -> set[int]:
        with self._lock:
            return queries.guilds(self._conn)

    def channels(self) -> list[tuple[int | None, int]]:
        """(guild_id, channel_id) of every channel with indexed or pending images, or with
        a message the bot saw (its read mark)."""
        with self._lock:
            return queries.channels(self._conn)
