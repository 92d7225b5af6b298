"""The index's thread-side store (bot/index/store.py) and its vectors (bot/index/vectors.py)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bot.index import image_index
from bot.index.image_index import ImageIndex
from bot.index.refs import Hit, ImageRef
from bot.index.schema import SCHEMA_VERSION
from bot.index.store import IndexStore
from bot.index.vectors import VectorStore
from bot.workers import Workers
from tests.e2e.harness import eventually
from tests.old_index import index_at

REPO = Path(__file__).resolve().parent.parent
DIM = 8
FORGET_AT = 10**9  # a `!forget` message after every message of these tests


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def ref(
    message_id: int,
    attachment_id: int = 1,
    *,
    channel: int = 10,
    guild: int | None = 1,
    author: int = 100,
    parent: int | None = None,
    created: float | None = None,
) -> ImageRef:
    return ImageRef(
        guild_id=guild,
        channel_id=channel,
        message_id=message_id,
        attachment_id=attachment_id,
        author_id=author,
        created_at=float(message_id) if created is None else created,
        parent_id=parent,
    )


def item(r: ImageRef, seed: int | None = None) -> tuple[ImageRef, str, np.ndarray]:
    seed = r.message_id * 10 + r.attachment_id if seed is None else seed
    return (r, f"hash{seed}", unit(seed))


def keys(hits: Iterable[Hit]) -> list[tuple[int, int]]:
    return [(h.ref.message_id, h.ref.attachment_id) for h in hits]


def queue_and_add(store: IndexStore, items: Iterable[tuple[ImageRef, str, np.ndarray]]) -> int:
    """An upload's way in: queued when seen, stored once embedded."""
    items = list(items)
    store.add_pending([r for r, _, _ in items])
    return store.add(items)


def contains(store: IndexStore, message_id: int, attachment_id: int) -> bool:
    """Indexed and searchable: in the in-memory vectors of the current model."""
    return (message_id, attachment_id) in store._vectors


def stale_refs(store: IndexStore) -> list[ImageRef]:
    """Rows embedded by another model, read straight from the file."""
    conn = sqlite3.connect(store.path)
    try:
        rows = conn.execute(
            "SELECT guild_id, channel_id, message_id, attachment_id, author_id, created_at, "
            "parent_id FROM images WHERE model_id != ? ORDER BY message_id, attachment_id",
            (store.model_id,),
        ).fetchall()
    finally:
        conn.close()
    return [ImageRef(*row) for row in rows]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "index.sqlite3"


@pytest.fixture
def index(db: Path) -> Iterable[IndexStore]:
    idx = IndexStore(db, "clip-a")
    yield idx
    idx.close()


# -- schema and lifecycle -----------------------------------------------------------------


def test_schema_pragmas_and_version(index: IndexStore, db: Path) -> None:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "pending"} <= tables
    columns = {r[1] for r in conn.execute("PRAGMA table_info(images)")}
    assert not any("url" in c for c in columns)  # attachment URLs expire: never stored
    conn.close()
    assert index._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert index._conn.execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_newer_schema_is_refused(db: Path) -> None:
    IndexStore(db, "clip-a").close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        IndexStore(db, "clip-a")


def test_close_is_idempotent_and_checkpoints(db: Path) -> None:
    idx = IndexStore(db, "clip-a")
    queue_and_add(idx, [item(ref(1))])
    idx.close()
    idx.close()
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(sqlite3.ProgrammingError):
        idx.add_pending([ref(2)])
    with IndexStore(db, "clip-a") as again:
        assert contains(again, 1, 1)


# -- pending ------------------------------------------------------------------------------


def test_add_pending_is_idempotent_and_oldest_first(index: IndexStore) -> None:
    assert len(index.add_pending([ref(5), ref(3), ref(3, 2, channel=11)])) == 3
    assert len(index.add_pending([ref(3), ref(4)])) == 1
    assert [(r.message_id, r.attachment_id) for r in index.pending()] == [
        (3, 1),
        (3, 2),
        (4, 1),
        (5, 1),
    ]
    assert index.pending(limit=2) == [ref(3), ref(3, 2, channel=11)]
    assert index.pending(channel_ids=[11]) == [ref(3, 2, channel=11)]
    assert index.pending(channel_ids=[]) == []
    assert index.pending_count() == 4
    assert index.pending_count([10]) == 3
    assert index.pending_count([99]) == 0


def test_add_pending_skips_indexed(index: IndexStore) -> None:
    queue_and_add(index, [item(ref(1))])
    assert len(index.add_pending([ref(1), ref(2)])) == 1
    assert index.pending() == [ref(2)]


def test_drop_pending_and_record_failure(index: IndexStore) -> None:
    index.add_pending([ref(1), ref(2), ref(3)])
    index.drop_pending([ref(2), ref(99)])
    assert index.pending() == [ref(1), ref(3)]
    assert index.record_failure([ref(1)], max_attempts=2) == 0
    assert index.record_failure([ref(1), ref(3)], max_attempts=2) == 1
    assert index.pending() == [ref(3)]


def test_pending_survives_restart(db: Path) -> None:
    with IndexStore(db, "clip-a") as idx:
        idx.add_pending([ref(1, guild=None, channel=7), ref(2, parent=10, channel=12)])
    with IndexStore(db, "clip-a") as idx:
        assert idx.pending() == [ref(1, guild=None, channel=7), ref(2, parent=10, channel=12)]


# -- storing ------------------------------------------------------------------------------


def test_add_takes_refs_off_pending_and_keeps_the_last_of_a_ref_given_twice(
    index: IndexStore,
) -> None:
    index.add_pending([ref(1), ref(2)])
    assert index.add([item(ref(1)), item(ref(1), seed=7)]) == 1  # same ref twice: last wins
    assert index.pending() == [ref(2)]
    assert contains(index, 1, 1) and not contains(index, 2, 1)
    (hit,) = index.search(unit(7), [10])
    assert hit.ref == ref(1) and hit.score == pytest.approx(1.0, abs=1e-6)
    assert queue_and_add(index, [item(ref(1), seed=8)]) == 0  # indexed already: not queued again
    assert index.count() == 1


def test_an_image_removed_while_it_was_embedded_stays_removed(index: IndexStore) -> None:
    index.add_pending([ref(1), ref(2), ref(3, author=101), ref(4, 2)])
    taken = index.pending()  # the indexer takes a batch, then embeds it for a while
    index.remove_messages([1])  # deleted meanwhile
    index.forget_author(1, 101, FORGET_AT)  # forgotten meanwhile
    index.keep_only_attachments(4, [1])  # edited away meanwhile
    assert index.add([item(r) for r in taken]) == 1
    assert contains(index, 2, 1) and index.count() == 1 and index.pending_count() == 0
    index.close()
    with IndexStore(index.path, "clip-a") as again:  # and after a restart
        assert again.count() == 1 and again.pending_count() == 0


def test_add_validates_before_writing(index: IndexStore) -> None:
    queue_and_add(index, [item(ref(1))])
    with pytest.raises(ValueError, match="dim"):
        queue_and_add(index, [item(ref(2)), (ref(3), "h", np.ones(DIM + 1, np.float32))])
    with pytest.raises(ValueError, match="finite"):
        queue_and_add(index, [(ref(4), "h", np.full(DIM, np.nan, np.float32))])
    assert index.count() == 1 and not contains(index, 2, 1)
    with pytest.raises(ValueError, match="dim"):
        index.search(np.ones(DIM + 1), [10])


def test_same_content_in_two_messages_is_two_rows_one_embedding(index: IndexStore) -> None:
    vec = unit(42)
    assert index.embedding_for_hash("abc", [10]) is None
    queue_and_add(index, [(ref(1), "abc", vec)])
    cached = index.embedding_for_hash("abc", [10, 12])
    assert cached is not None and np.array_equal(cached, vec[None])  # (frames, dim)
    assert index.embedding_for_hash("abc", [11]) is None  # only in the channels asked about
    queue_and_add(index, [(ref(2, channel=11), "abc", cached)])
    assert index.count() == 2
    hits = index.search(vec, [10, 11], top=5)
    assert sorted(keys(hits)) == [(1, 1), (2, 1)]
    plan = index._conn.execute(
        "EXPLAIN QUERY PLAN SELECT content_hash, dim, embedding FROM images "
        "WHERE content_hash IN (?, ?) AND model_id = ?",
        ("abc", "def", "clip-a"),
    ).fetchall()
    assert "USING INDEX images_hash" in str(plan)


def test_a_batch_of_contents_is_looked_up_in_one_question(tmp_path: Path) -> None:
    """What the indexer asks before embedding a batch: of these contents, which are stored."""
    frames = np.stack([unit(2), unit(3)])  # an animation's two frames
    with IndexStore(tmp_path / "index.sqlite3", "clip-b") as other:
        queue_and_add(other, [(ref(9), "c", unit(9))])  # stored, but for another model
    with IndexStore(tmp_path / "index.sqlite3", "clip-a") as index:
        stored = [(ref(1), "a", unit(1)), (ref(2), "b", frames), (ref(3), "a", unit(1))]
        queue_and_add(index, stored)
        found = index.embeddings_for_hashes(["a", "b", "c", "new"])
        assert sorted(found) == ["a", "b"]
        assert np.array_equal(found["a"], unit(1)[None]) and np.array_equal(found["b"], frames)
        assert index.embeddings_for_hashes([]) == {}


# -- pruning ------------------------------------------------------------------------------


def test_per_channel_bound_keeps_the_newest(db: Path) -> None:
    with IndexStore(db, "clip-a", per_channel=3) as idx:
        queue_and_add(idx, [item(ref(m)) for m in (5, 1, 4)])
        queue_and_add(idx, [item(ref(m)) for m in (2, 6)] + [item(ref(50, channel=11))])
        assert sorted(keys(idx.search(unit(0), [10], top=10))) == [(4, 1), (5, 1), (6, 1)]
        assert idx.count([11]) == 1
        # Older than everything a full channel keeps: not queued, and dropped if queued.
        assert len(idx.add_pending([ref(3), ref(7)])) == 1
        queue_and_add(idx, [item(ref(8)), item(ref(9))])  # keeps 6, 8, 9: 7 may still make it
        assert idx.pending() == [ref(7)]
        queue_and_add(idx, [item(ref(10))])  # keeps 8, 9, 10: 7 would be pruned at once, so it goes
        assert idx.pending() == []
        assert sorted(keys(idx.search(unit(0), [10], top=10))) == [(8, 1), (9, 1), (10, 1)]


def test_prune_applies_bound_everywhere_and_retention(db: Path) -> None:
    now = [10 * 86400.0]
    with IndexStore(db, "clip-a", retention_days=2, clock=lambda: now[0]) as idx:
        day = 86400.0
        queue_and_add(idx, [item(ref(1, created=7 * day)), item(ref(2, created=9 * day))])
        assert idx.count() == 1  # 1 was already past retention: never queued
        queue_and_add(idx, [item(ref(6, created=9.2 * day))])
        assert len(idx.add_pending([ref(3, created=7 * day), ref(4, created=9.5 * day)])) == 1
        assert idx.prune(now=12 * day) == 3  # 2, 6 and pending 4 (all before day 10)
        assert idx.count() == 0 and idx.pending_count() == 0
        assert len(idx.add_pending([ref(5, created=10 * day)])) == 1
        now[0] = 20 * day  # its embedding arrives after it aged out: written, then expired
        assert idx.add([item(ref(5, created=10 * day))]) == 1
        assert idx.count() == 0
    with IndexStore(db, "clip-a", per_channel=1) as idx:
        assert idx.prune() == 0


def test_prune_bound_after_lowering_per_channel(db: Path) -> None:
    with IndexStore(db, "clip-a") as idx:
        queue_and_add(idx, [item(ref(m)) for m in range(1, 11)])
        idx.add_pending([ref(0)])
    with IndexStore(db, "clip-a", per_channel=4) as idx:
        assert idx.prune() == 7  # 6 indexed rows and the older pending one
        assert sorted(keys(idx.search(unit(0), [10], top=10))) == [(m, 1) for m in range(7, 11)]


# -- removal ------------------------------------------------------------------------------


def test_remove_messages_and_edited_attachments(index: IndexStore) -> None:
    queue_and_add(index, [item(ref(1, a)) for a in (1, 2, 3)] + [item(ref(2))])
    index.add_pending([ref(1, 4), ref(3)])
    assert index.keep_only_attachments(1, {2}) == 3  # 1/1, 1/3 indexed and 1/4 pending
    assert sorted(keys(index.search(unit(0), [10], top=10))) == [(1, 2), (2, 1)]
    assert index.remove_messages([2, 3, 404]) == 2
    assert keys(index.search(unit(0), [10], top=10)) == [(1, 2)]
    assert index.keep_only_attachments(1, []) == 1
    assert index.count() == 0 and index.pending_count() == 0


def test_previews_an_older_version_keyed_by_position_are_queued_anew_by_address(
    index: IndexStore,
) -> None:
    """An older version keyed a message's previews by position, which an edit missed while
    the bot was down may have moved; read again (catch-up, `!index`), they are queued under
    their addresses' keys, and the old rows go, so that none is there twice."""
    by_address = 5000  # between EMBED_KEYS_FROM and SNOWFLAKES_FROM
    queue_and_add(index, [item(ref(1, 0)), item(ref(1, 10**18))])
    index.add_pending([ref(2, 1)])
    assert index.add_pending([ref(1, by_address), ref(2, by_address)]) == [
        ref(1, by_address),
        ref(2, by_address),
    ]
    assert keys(index.search(unit(0), [10], top=10)) == [(1, 10**18)]  # the attachment stays
    assert index.pending_count() == 2


def test_a_search_drops_an_image_no_longer_in_its_message(index: IndexStore) -> None:
    queue_and_add(index, [item(ref(1, a)) for a in (1, 2)])
    assert index.remove_images([(1, 1), (404, 1)]) == 1
    assert keys(index.search(unit(0), [10], top=10)) == [(1, 2)]


def test_remove_channel_includes_its_threads(index: IndexStore) -> None:
    queue_and_add(
        index, [item(ref(1)), item(ref(2, channel=12, parent=10)), item(ref(3, channel=11))]
    )
    index.add_pending([ref(4, channel=12, parent=10)])
    assert index.remove_channel(10) == 3
    assert index.count() == 1 and index.pending_count() == 0
    assert keys(index.search(unit(0), [10, 11, 12], top=5)) == [(3, 1)]


def test_remove_guild_and_forget_author(index: IndexStore) -> None:
    queue_and_add(
        index,
        [
            item(ref(1, guild=1, author=7)),
            item(ref(2, guild=1, author=8)),
            item(ref(3, guild=2, channel=20, author=7)),
            item(ref(4, guild=None, channel=30, author=7)),
        ],
    )
    index.add_pending([ref(5, guild=1, author=7), ref(6, guild=None, channel=30, author=7)])
    assert index.forget_author(1, 7, FORGET_AT) == 2
    assert index.forget_author(None, 7, FORGET_AT) == 2  # DMs only
    assert sorted(keys(index.search(unit(0), [10, 20, 30], top=5))) == [(2, 1), (3, 1)]
    assert index.remove_guild(2) == 1
    assert keys(index.search(unit(0), [10, 20, 30], top=5)) == [(2, 1)]
    assert index.remove_guild(2) == 0


# -- queries ------------------------------------------------------------------------------


def test_search_ranks_restricts_and_bounds(index: IndexStore) -> None:
    q = unit(1000)
    refs = [ref(m, channel=10 + m % 3) for m in range(1, 31)]
    queue_and_add(index, [item(r) for r in refs])
    hits = index.search(q, [10, 11], top=5)
    expected = sorted(
        (r for r in refs if r.channel_id in (10, 11)),
        key=lambda r: -float(item(r)[2] @ q),
    )[:5]
    assert [h.ref for h in hits] == expected
    assert all(h.score == pytest.approx(float(item(h.ref)[2] @ q), abs=1e-6) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert index.search(q, []) == []
    assert index.search(q, [99]) == []
    assert index.search(q, [10], top=0) == []
    assert len(index.search(q, [10], top=100)) == 10
    assert index.count() == 30 and index.count([12]) == 10 and index.count([]) == 0


def test_search_on_an_empty_index(index: IndexStore) -> None:
    assert index.search(unit(1), [10], top=3) == []
    assert index.count() == 0


def test_ties_prefer_newer_messages(index: IndexStore) -> None:
    vec = unit(5)
    queue_and_add(index, [(ref(m), "same", vec) for m in (3, 9, 6)])
    assert keys(index.search(vec, [10], top=2)) == [(9, 1), (6, 1)]


@pytest.mark.parametrize("dim", [512, 768, 17])
def test_equal_images_score_equally_wherever_their_rows_lie(dim: int) -> None:
    """Ties fall to the newer message only if equal rows get equal scores: a BLAS matrix
    product sums rows differently by their position in the matrix (measured)."""
    rng = np.random.default_rng(dim)
    others = rng.standard_normal((1001, dim)).astype(np.float32)
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    copies = (3, 100, 257, 511, 512, 777, 998, 1000)
    others[list(copies)] = unit(7, dim)
    store = VectorStore(dim)
    refs = [ref(10_000 + i, channel=10 + i % 4) for i in range(len(others))]
    store.add(refs, others)
    query = unit(7, dim) + 0.1 * unit(8, dim)
    for channels in ([10, 11, 12, 13], [10]):  # every row, and a subset copied in chunks
        wanted = [i for i in copies if 10 + i % 4 in channels]
        hits = store.search(query, channels, top=len(wanted))
        assert len({hit.score for hit in hits}) == 1
        assert keys(hits) == [(10_000 + i, 1) for i in reversed(wanted)]


def test_a_store_that_cannot_grow_stays_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """No memory to grow (after the rows are committed to SQLite): the new rows are left out,
    and the store's keys still name the rows that hold them."""
    store = VectorStore(8)
    store.add([ref(m) for m in range(1, 4)], [unit(m, 8) for m in range(1, 4)])
    store.reserve(3)

    def out_of_memory(capacity: int) -> None:
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr(store, "reserve", out_of_memory)
        with pytest.raises(MemoryError):
            store.add([ref(2), ref(7)], [unit(5, 8), unit(7, 8)])
    assert len(store) == 3
    assert keys(store.search(unit(2, 8), [10], top=1)) == [(2, 1)]  # its old vector
    assert store.remove([(1, 1), (7, 1)]) == 1
    assert sorted(keys(store.search(unit(3, 8), [10], top=5))) == [(2, 1), (3, 1)]
    store.add([ref(7)], [unit(7, 8)])
    assert keys(store.search(unit(7, 8), [10], top=1)) == [(7, 1)] and len(store) == 3


def test_last_message_id_and_channels(index: IndexStore) -> None:
    assert index.last_message_id(10) is None
    assert index.channels() == []
    queue_and_add(index, [item(ref(5)), item(ref(3, channel=30, guild=None))])
    index.add_pending([ref(9), ref(2, channel=11)])
    assert index.last_message_id(10) == 9
    assert index.last_message_id(10, before=9) == 5  # pending and indexed alike
    assert index.last_message_id(10, before=5) is None
    assert index.last_message_id(30) == 3
    assert index.channels() == [(1, 10), (1, 11), (None, 30)]


def test_rows_of_a_bad_size_are_requeued_on_load(db: Path) -> None:
    with IndexStore(db, "clip-a") as idx:
        queue_and_add(idx, [item(ref(1)), item(ref(2))])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE images SET embedding = x'00' WHERE message_id = 2")
    conn.commit()
    conn.close()
    with IndexStore(db, "clip-a") as idx:
        assert idx.count() == 1 and idx.pending() == [ref(2)]


# -- model change and persistence ---------------------------------------------------------


def test_model_change_never_mixes_embedding_spaces(db: Path) -> None:
    with IndexStore(db, "clip-a") as idx:
        queue_and_add(idx, [item(ref(m)) for m in (1, 2, 3)])
    with IndexStore(db, "clip-b") as idx:
        assert idx.model_id == "clip-b"
        assert idx.count() == 0
        assert idx.search(unit(11), [10], top=5) == []
        assert not contains(idx, 1, 1)
        assert idx.embedding_for_hash("hash11", [10]) is None
        assert stale_refs(idx) == [ref(1), ref(2), ref(3)]
        assert len(idx.add_pending([ref(1)])) == 1  # moved to pending, no longer stale
        assert stale_refs(idx) == [ref(2), ref(3)]
        assert idx.requeue_stale() == 2
        assert stale_refs(idx) == [] and idx.pending_count() == 3
        new = unit(77, dim=4)  # another model, another dimension
        queue_and_add(idx, [(ref(2), "hash21", new)])
        assert keys(idx.search(new, [10], top=5)) == [(2, 1)]
    with IndexStore(db, "clip-a") as idx:  # back to the old model: only its rows, none left
        assert idx.count() == 0
        assert stale_refs(idx) == [ref(2)]


def test_reopen_gives_the_same_results(db: Path) -> None:
    rng = np.random.default_rng(3)
    refs = [ref(m, channel=10 + m % 4, guild=None if m % 4 == 3 else 1) for m in range(1, 301)]
    queries = [unit(s) for s in range(5)]
    with IndexStore(db, "clip-a", per_channel=60) as idx:
        vecs = rng.standard_normal((len(refs), DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        queue_and_add(idx, zip(refs, (f"h{i}" for i in range(len(refs))), vecs, strict=True))
        idx.remove_messages(range(250, 260))
        before = [idx.search(q, [10, 11, 13], top=7) for q in queries]
        count = idx.count()
    with IndexStore(db, "clip-a", per_channel=60) as idx:
        assert idx.count() == count == 230
        after = [idx.search(q, [10, 11, 13], top=7) for q in queries]
    # Rows sit at other positions after a reload, so float32 sums may differ in the last bit.
    assert [[h.ref for h in hits] for hits in after] == [[h.ref for h in hits] for hits in before]
    for hits, old in zip(after, before, strict=True):
        assert [h.score for h in hits] == pytest.approx([h.score for h in old], abs=1e-6)


# -- crash safety -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from bot.index.refs import ImageRef
    from bot.index.store import IndexStore

    idx = IndexStore(Path(sys.argv[1]), "m", per_channel=10**6)
    rng = np.random.default_rng(0)
    batch = 0
    while True:
        refs = [
            ImageRef(1, 10 + batch % 3, batch * 1000 + i + 1, 1, 5, 1e9 + batch)
            for i in range(200)
        ]
        idx.add_pending(refs)
        print("P", batch, flush=True)
        vecs = rng.standard_normal((200, 64)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        idx.add((r, f"h{r.message_id}", v) for r, v in zip(refs, vecs))
        print("A", batch, flush=True)
        batch += 1
    """
)


@pytest.mark.parametrize("delay", [0.3, 0.45])
def test_sigkill_midway_leaves_a_consistent_file(tmp_path: Path, delay: float) -> None:
    db = tmp_path / "index.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["P", "0"]  # started and committing
    # Killed `delay` after its first batch is stored, not after it started: how long that
    # batch takes is the machine's load, and the checks below need one stored batch.
    assert child.stdout.readline().split() == ["A", "0"]
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    # A line the kill cut short ("P" alone; seen once under load) says nothing: left out.
    lines = [["P", "0"], ["A", "0"]] + [line.split() for line in child.stdout.read().splitlines()]
    lines = [line for line in lines if len(line) == 2]
    child.wait()
    queued = {int(b) for kind, b in lines if kind == "P"}
    added = {int(b) for kind, b in lines if kind == "A"}

    conn = sqlite3.connect(db)  # recovers the WAL like any reader
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    indexed = {m for (m,) in conn.execute("SELECT message_id FROM images")}
    pending = {m for (m,) in conn.execute("SELECT message_id FROM pending")}
    both = conn.execute("SELECT COUNT(*) FROM images JOIN pending USING (message_id)").fetchone()
    conn.close()
    assert both == (0,)
    top_batch = max(m // 1000 for m in indexed | pending)
    for b in range(top_batch + 1):
        batch = set(range(b * 1000 + 1, b * 1000 + 201))
        in_index, in_pending = len(batch & indexed), len(batch & pending)
        assert in_index in (0, 200) and in_pending in (0, 200)  # atomic batches
        assert in_index + in_pending == 200  # every queued upload indexed or still pending
        if b in added:
            assert in_index == 200
    assert queued <= set(range(top_batch + 1))

    with IndexStore(db, "m", per_channel=10**6) as idx:
        assert idx.count() == len(indexed)
        assert idx.pending_count() == len(pending)
        q = unit(9, dim=64)
        conn = sqlite3.connect(db)
        rows = conn.execute("SELECT message_id, embedding FROM images WHERE channel_id = 11")
        brute = sorted(rows, key=lambda r: -float(np.frombuffer(r[1], np.float32) @ q))[:5]
        conn.close()
        assert [h.ref.message_id for h in idx.search(q, [11], top=5)] == [m for m, _ in brute]


# -- the in-memory matrix stays equal to the database: a state machine ---------------------

CHANNELS = {10: (1, None), 11: (1, None), 12: (1, 10), 20: (2, None), 30: (None, None)}
CHANNEL_IDS = list(CHANNELS)
HASHES = [f"h{i}" for i in range(6)]
HASH_VECS = {h: unit(500 + i) for i, h in enumerate(HASHES)}
QUERIES = [unit(900 + i) for i in range(2)]
PER_CHANNEL = 3
RETENTION = 0.5  # days
Key = tuple[int, int]


def universe_ref(m: int, a: int) -> ImageRef:
    """Message m always lives in the same channel, by the same author, at the same time."""
    channel = CHANNEL_IDS[m % len(CHANNEL_IDS)]
    guild, parent = CHANNELS[channel]
    return ImageRef(guild, channel, m, a, 100 + (m // 5) % 2, m * 1000.0, parent)


key_st = st.tuples(st.integers(1, 40), st.integers(1, 2))


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="glimpse-index-"))
        self.now = 50_000.0
        self.indexed: dict[Key, tuple[ImageRef, str]] = {}
        self.pend: dict[Key, ImageRef] = {}
        self.in_flight: list[Key] = []
        self.kept_out: dict[tuple[int, int], int] = {}  # each member's `forget` boundary
        self.index = self.open()

    def open(self) -> IndexStore:
        return IndexStore(
            self.dir / "index.sqlite3",
            "m",
            per_channel=PER_CHANNEL,
            retention_days=RETENTION,
            clock=lambda: self.now,
        )

    def teardown(self) -> None:
        self.index.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # the oracle's rules, written plainly
    def floor(self, channel: int) -> Key | None:
        mine = sorted((k for k, (r, _) in self.indexed.items() if r.channel_id == channel))
        return mine[-PER_CHANNEL] if len(mine) >= PER_CHANNEL else None

    def drop(self, doomed: object) -> int:
        assert callable(doomed)
        gone = [k for k, (r, _) in self.indexed.items() if doomed(r)]
        gone_pending = [k for k, r in self.pend.items() if doomed(r)]
        for k in gone:
            del self.indexed[k]
        for k in gone_pending:
            del self.pend[k]
        return len(gone) + len(gone_pending)

    def prune_channel(self, channel: int) -> int:
        floor = self.floor(channel)
        if floor is None:
            return 0
        return self.drop(lambda r: r.channel_id == channel and r.key < floor)

    def prune_retention(self, now: float) -> int:
        return self.drop(lambda r: r.created_at < now - RETENTION * 86400)

    @rule(picks=st.lists(key_st, max_size=6))
    def add_pending(self, picks: list[Key]) -> None:
        refs = [universe_ref(*k) for k in picks]
        expected = 0
        for r in refs:
            if r.key in self.indexed or r.key in self.pend:
                continue
            if r.message_id < self.kept_out.get((r.guild_id or 0, r.author_id), 0):
                continue
            floor = self.floor(r.channel_id)
            if r.created_at < self.now - RETENTION * 86400 or (floor is not None and r.key < floor):
                continue
            self.pend[r.key] = r
            expected += 1
        assert len(self.index.add_pending(refs)) == expected

    @rule(picks=st.lists(st.tuples(key_st, st.sampled_from(HASHES)), max_size=6))
    def add(self, picks: list[tuple[Key, str]]) -> None:
        """Embeddings arrive; only images still queued are written (deleted stays deleted)."""
        items = [(universe_ref(*k), h, HASH_VECS[h]) for k, h in picks]
        written = {r.key: (r, h) for r, h, _ in items if r.key in self.pend}
        for key, entry in written.items():
            self.indexed[key] = entry
            del self.pend[key]
        for channel in {r.channel_id for r, _ in written.values()}:
            self.prune_channel(channel)
        if written:
            self.prune_retention(self.now)
        assert self.index.add(items) == len(written)

    @rule(picks=st.lists(key_st, max_size=4))
    def add_pending_then_embed(self, picks: list[Key]) -> None:
        self.add_pending(picks)
        queued = self.index.pending(limit=2)
        self.add([(r.key, HASHES[r.message_id % len(HASHES)]) for r in queued])

    @rule(limit=st.integers(1, 3))
    def start_embedding(self, limit: int) -> None:
        """The indexer takes a batch; removals and restarts may happen before it finishes."""
        self.in_flight = [r.key for r in self.index.pending(limit=limit)]

    @rule()
    def finish_embedding(self) -> None:
        self.add([(k, HASHES[k[0] % len(HASHES)]) for k in self.in_flight])
        self.in_flight = []

    @rule(messages=st.lists(st.integers(1, 40), max_size=3))
    def remove_messages(self, messages: list[int]) -> None:
        expected = self.drop(lambda r: r.message_id in messages)
        assert self.index.remove_messages(messages) == expected

    @rule(message=st.integers(1, 40), keep=st.sets(st.integers(1, 2)))
    def keep_only_attachments(self, message: int, keep: set[int]) -> None:
        expected = self.drop(lambda r: r.message_id == message and r.attachment_id not in keep)
        assert self.index.keep_only_attachments(message, keep) == expected

    @rule(channel=st.sampled_from(CHANNEL_IDS))
    def remove_channel(self, channel: int) -> None:
        expected = self.drop(lambda r: channel in (r.channel_id, r.parent_id))
        assert self.index.remove_channel(channel) == expected

    @rule(guild=st.sampled_from([1, 2]))
    def remove_guild(self, guild: int) -> None:
        expected = self.drop(lambda r: r.guild_id == guild)
        assert self.index.remove_guild(guild) == expected

    @rule(
        guild=st.sampled_from([1, 2, None]),
        author=st.sampled_from([100, 101]),
        at=st.integers(1, 41),
    )
    def forget_author(self, guild: int | None, author: int, at: int) -> None:
        """Forgotten at message `at`: their uploads from before it never come back."""
        expected = self.drop(lambda r: r.guild_id == guild and r.author_id == author)
        member = (guild or 0, author)
        self.kept_out[member] = max(self.kept_out.get(member, 0), at)
        assert self.index.forget_author(guild, author, at) == expected

    @rule(picks=st.lists(key_st, max_size=4))
    def drop_pending(self, picks: list[Key]) -> None:
        for k in picks:
            self.pend.pop(k, None)
        self.index.drop_pending([universe_ref(*k) for k in picks])

    @rule(dt=st.floats(0, 4000))
    def prune_later(self, dt: float) -> None:
        self.now += dt
        expected = sum(self.prune_channel(c) for c in CHANNEL_IDS)
        expected += self.prune_retention(self.now)
        assert self.index.prune() == expected

    @precondition(lambda self: len(self.indexed) + len(self.pend) > 0)
    @rule()
    def reopen(self) -> None:
        self.index.close()
        self.index = self.open()

    @invariant()
    def matches_the_oracle(self) -> None:
        idx = self.index
        assert idx.count() == len(self.indexed)
        assert idx.pending() == [self.pend[k] for k in sorted(self.pend)][:64]
        assert idx.pending_count() == len(self.pend)
        for m in range(1, 41):
            for a in (1, 2):
                assert contains(idx, m, a) == ((m, a) in self.indexed)
        for h in HASHES:
            found = idx.embedding_for_hash(h, CHANNEL_IDS)
            if any(hh == h for _, hh in self.indexed.values()):
                assert found is not None and np.allclose(found, HASH_VECS[h])
            else:
                assert found is None
        for channel in CHANNEL_IDS:
            newest = [
                k[0] for k in [*self.indexed, *self.pend] if universe_ref(*k).channel_id == channel
            ]
            assert idx.last_message_id(channel) == (max(newest) if newest else None)
        subsets = [CHANNEL_IDS, [10, 12], [30], [11, 20, 99]]
        for q in QUERIES:
            for channels in subsets:
                for top in (1, 3):
                    self.check_search(q, channels, top)

    def check_search(self, q: np.ndarray, channels: list[int], top: int) -> None:
        candidates = sorted(
            (
                (-float(HASH_VECS[h].astype(np.float64) @ q), -r.message_id, -r.attachment_id, r)
                for r, h in self.indexed.values()
                if r.channel_id in channels
            ),
            key=lambda t: t[:3],
        )
        oracle = [(t[3], -t[0]) for t in candidates]
        hits = self.index.search(q, channels, top)
        assert len(hits) == min(top, len(oracle))
        scores = dict((r.key, s) for r, s in oracle)
        for hit, (_, want) in zip(hits, oracle, strict=False):
            assert hit.score == pytest.approx(want, abs=1e-5)  # the same score sequence
            assert hit.score == pytest.approx(scores[hit.ref.key], abs=1e-5)  # a real row
            assert hit.ref == self.indexed[hit.ref.key][0]
        assert len({h.ref.key for h in hits}) == len(hits)
        # Where the oracle has no near-tie, the ids must match exactly too.
        for hit, (want, score) in zip(hits, oracle, strict=False):
            if sum(abs(s - score) <= 1e-5 for _, s in oracle) == 1:
                assert hit.ref == want


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- speed --------------------------------------------------------------------------------


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder removed after the test, passed or failed: pytest keeps a failed test's tmp_path."""
    with tempfile.TemporaryDirectory(prefix="glimpse-test-") as folder:
        yield Path(folder)


def test_search_speed_over_100k_embeddings(scratch: Path) -> None:
    n, dim, channels, batches = 100_000, 512, 200, 4
    rng = np.random.default_rng(0)
    insert_s = 0.0
    with IndexStore(scratch / "index.sqlite3", "clip") as idx:
        per_batch = n // batches
        for b in range(batches):
            vecs = rng.standard_normal((per_batch, dim), dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            refs = [
                ImageRef(1, 1000 + m % channels, m + 1, 1, 7, float(m))
                for m in range(b * per_batch, (b + 1) * per_batch)
            ]
            items = list(zip(refs, (f"{r.message_id:064x}" for r in refs), vecs, strict=True))
            t0 = time.perf_counter()
            queue_and_add(idx, items)
            insert_s += time.perf_counter() - t0
        assert idx.count() == n

        allowed = list(range(1000, 1050))  # 50 of 200 channels: 25,000 rows
        queries = rng.standard_normal((50, dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

        def p95(channel_ids: list[int]) -> float:
            times = []
            for q in queries:
                t = time.perf_counter()
                hits = idx.search(q, channel_ids, top=10)
                times.append(time.perf_counter() - t)
                assert len(hits) == 10
            return float(np.percentile(times, 95) * 1000)

        p95(allowed)  # warm up
        subset_ms, all_ms = p95(allowed), p95(list(range(1000, 1000 + channels)))
        tracemalloc.start()
        idx.search(queries[0], allowed, top=10)
        idx.search(queries[0], list(range(1000, 1200)), top=10)
        extra = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        matrix_mb = idx._vectors.first._mat.nbytes / 2**20
    t0 = time.perf_counter()
    with IndexStore(scratch / "index.sqlite3", "clip") as idx:
        load_s = time.perf_counter() - t0
        assert idx.count() == n
    print(
        f"\n100k x 512: insert {insert_s:.2f} s, reopen {load_s:.2f} s, search top-10 p95: "
        f"50 channels (25k rows) {subset_ms:.1f} ms, all 200 channels {all_ms:.1f} ms; "
        f"matrix {matrix_mb:.0f} MiB (live {n * dim * 4 / 2**20:.0f}), "
        f"search peak extra {extra / 2**20:.1f} MiB"
    )
    assert subset_ms < 50
    assert extra < 0.1 * n * dim * 4
    assert matrix_mb < 1.3 * n * dim * 4 / 2**20


# -- opting out ---------------------------------------------------------------------------


def test_opt_out_removes_and_keeps_out_until_opt_in_across_restarts(db: Path) -> None:
    with IndexStore(db, "clip-a") as idx:
        queue_and_add(idx, [item(ref(1, author=7)), item(ref(2, author=8))])
        idx.add_pending([ref(3, author=7), ref(4, author=7, guild=None, channel=30)])
        assert idx.opt_out(1, 7) == 2  # indexed 1 and pending 3, in this server only
        assert idx.count() == 1 and idx.pending() == [ref(4, author=7, guild=None, channel=30)]
        assert idx.add_pending([ref(5, author=7)]) == []  # later uploads stay out
    with IndexStore(db, "clip-a") as idx:  # the choice survives a restart
        assert idx.add_pending([ref(6, author=7)]) == []
        assert idx.add_pending([ref(6, author=7, guild=2, channel=20)]) != []  # other server
        assert idx.opt_in(1, 7, 7) is True and idx.opt_in(1, 7, 9) is False
        assert [r.message_id for r in idx.add_pending([ref(7, author=7)])] == [7]
        assert idx.count() == 1  # opting in brings nothing back: only what comes after


def test_uploads_posted_while_opted_out_stay_out_when_read_after_opting_in(db: Path) -> None:
    """Catch-up after a restart, or `!index`, may read a message posted while its author was
    out only once they are back in: it stays out, theirs from the `!optin` message on do not."""
    with IndexStore(db, "clip-a") as idx:
        idx.opt_out(1, 7)
        assert idx.opt_in(1, 7, 20) is True
        assert idx.add_pending([ref(19, author=7)]) == []
        assert idx.keeps_out(1, 7, 19) and not idx.keeps_out(1, 7, 21)
        assert not idx.keeps_out(2, 7, 19) and not idx.keeps_out(1, 8, 19)  # nobody else
    with IndexStore(db, "clip-a") as idx:  # remembered across a restart
        assert idx.add_pending([ref(19, author=7)]) == []
        assert [r.message_id for r in idx.add_pending([ref(21, author=7)])] == [21]
        idx.opt_out(1, 7)
        assert idx.keeps_out(1, 7, 30)
        assert idx.opt_in(1, 7, 40) is True  # a second return moves the line
        assert idx.keeps_out(1, 7, 30) and not idx.keeps_out(1, 7, 41)


def test_a_forgotten_members_earlier_uploads_stay_out_when_read_again(db: Path) -> None:
    """Catch-up and `!index` read old history again: what `!forget` removed stays out, and the
    member's uploads from the `!forget` message on are indexed as before."""
    with IndexStore(db, "clip-a") as idx:
        queue_and_add(idx, [item(ref(1, author=7)), item(ref(2, author=8))])
        assert idx.forget_author(1, 7, 10) == 1
        assert idx.add_pending([ref(1, author=7)]) == []  # read again
        assert idx.keeps_out(1, 7, 9) and not idx.keeps_out(1, 7, 11)
        assert not idx.keeps_out(2, 7, 9) and not idx.keeps_out(1, 8, 9)  # nobody else
        assert idx.forget_author(1, 7, 5) == 0 and idx.keeps_out(1, 7, 9)  # never moved back
    with IndexStore(db, "clip-a") as idx:  # remembered across a restart
        assert idx.keeps_out(1, 7, 9) and idx.add_pending([ref(3, author=7)]) == []
        assert [r.message_id for r in idx.add_pending([ref(11, author=7)])] == [11]
        idx.opt_out(1, 7)
        assert idx.opt_in(1, 7, 8) is True
        assert idx.keeps_out(1, 7, 9) and not idx.keeps_out(1, 7, 12)  # the later boundary


def test_a_version_5_index_keeps_its_opt_outs_and_gains_opt_ins(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = index_at(db, 5)
    conn.execute("INSERT INTO optouts VALUES (1, 7)")
    conn.close()
    with IndexStore(db, "clip-a") as idx:
        assert idx.keeps_out(1, 7, 50)
        assert idx.opt_in(1, 7, 60) is True
    with IndexStore(db, "clip-a") as idx:
        assert idx.keeps_out(1, 7, 50) and not idx.keeps_out(1, 7, 61)


def test_opting_out_in_a_dm_covers_that_conversation(index: IndexStore) -> None:
    dm = {"guild": None, "channel": 30, "author": 7}
    queue_and_add(index, [item(ref(1, **dm)), item(ref(2, author=7))])
    assert index.opt_out(None, 7) == 1
    assert index.add_pending([ref(3, **dm)]) == [] and index.count() == 1


async def test_retention_applies_as_time_passes_without_new_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image ages out on a server where nothing new is posted: before, only a write or a
    restart applied RETENTION_DAYS, and a search went on finding what it said was gone."""
    monkeypatch.setattr(image_index, "AGE_OUT_EVERY_S", 0.05)
    workers = Workers()
    index = await ImageIndex.open(
        tmp_path / "index.sqlite3", "clip-a", workers, per_channel=100, retention_days=1
    )
    try:
        fresh, ageing = ref(1, created=time.time()), ref(2, created=time.time() - 86400 + 0.5)
        await index.add_pending([fresh, ageing])
        assert await index.settle([item(fresh), item(ageing)], []) == 2

        async def aged_out() -> bool:
            return await index.count() == 1

        await eventually(aged_out)
        assert keys(await index.search(unit(2), [10], top=10)) == [(1, 1)]
    finally:
        await index.close()
        workers.shutdown()


class FailingCommit:
    """The store's connection, whose COMMIT fails: with WAL, a full disk is told there."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


def test_channel_settings_in_memory_change_only_once_committed(index: IndexStore) -> None:
    """`!alttext on` that the disk refused must not start describing images in that channel
    until the next restart, nor a channel's removal forget its settings in memory alone."""
    assert index.set_reposts(1, 10, True) and index.set_alt_text(1, 10, True)
    real = index._conn
    index._conn = FailingCommit(real)  # type: ignore[assignment]
    for change in (
        lambda: index.set_reposts(1, 11, True),
        lambda: index.set_alt_text(1, 10, False),
        lambda: index.remove_channel(10),
    ):
        with pytest.raises(sqlite3.OperationalError):
            change()
        assert index.repost_channels == {10} and index.alt_text_channels == {10}
        assert not real.in_transaction
    index._conn = real
    assert index.set_alt_text(1, 10, False) and index.alt_text_channels == frozenset()
