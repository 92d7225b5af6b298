"""Issue 15 in the index: alt text fused into ranking, example images left out of their own
results, earlier images a repost repeats, animations' frames, and the schema upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.index import schema
from bot.index.alt_text import alt_words, query_terms
from bot.index.ranking import Excluded
from bot.index.refs import ImageRef
from bot.index.store import IndexStore
from tests.old_index import index_at
from tests.test_index import DIM, keys, ref, unit


def picture(score: float, query: np.ndarray, seed: int) -> np.ndarray:
    """A unit vector whose cosine with the unit `query` is exactly `score`."""
    other = unit(seed) - query * float(unit(seed) @ query)
    other /= np.linalg.norm(other)
    return (score * query + np.sqrt(1 - score**2) * other).astype(np.float32)


def store_with(
    db: Path, images: list[tuple[ImageRef, np.ndarray, str | None]], digest: str = "h"
) -> IndexStore:
    store = IndexStore(db, "clip-a")
    store.add_pending([r for r, _, _ in images], {r.key: alt for r, _, alt in images})
    store.add((r, f"{digest}{r.message_id}", v) for r, v, _ in images)
    return store


def test_alt_words_and_query_terms() -> None:
    assert alt_words("  My CAT, asleep!\non the sofa ") == " my cat asleep on the sofa "
    assert alt_words("") is None and alt_words(None) is None and alt_words("?!") is None
    forms = (" parrots ", " parrotss ", " parrotses ", " parrot ")
    assert query_terms("a photo of the Parrots") == (forms,)
    (puppy,) = query_terms("puppy")
    assert " puppies " in puppy
    (glasses,) = query_terms("glasses")
    assert " glass " in glasses
    assert query_terms("the of a") == ()


def test_an_alt_text_that_says_the_query_ranks_first_and_an_unrelated_one_never_lifts(
    tmp_path: Path,
) -> None:
    q = unit(1)
    images = [
        (ref(1), picture(0.90, q, 2), None),  # the best picture, no alt text
        (ref(2), picture(-0.20, q, 3), "Look: RED circles, drawn badly."),  # says it, in its words
        (ref(3), picture(0.85, q, 4), "a blue square"),  # unrelated alt text
        (ref(4), picture(0.60, q, 5), "a red square"),  # says half of it: counts for nothing
        (ref(5), picture(0.30, q, 6), "circle red"),  # says it, in another order
    ]
    with store_with(tmp_path / "i.sqlite3", images) as store:
        hits = store.search(q, [10], 5, terms=query_terms("a red circle"))
        assert keys(hits) == [(5, 1), (2, 1), (1, 1), (3, 1), (4, 1)]
        assert [h.alt for h in hits] == [True, True, False, False, False]
        assert hits[1].score == pytest.approx(-0.20, abs=1e-5)  # the picture's own cosine
        assert keys(store.search(q, [10], 5)) == [(1, 1), (3, 1), (4, 1), (5, 1), (2, 1)]
        assert store.set_alt_texts(2, {1: "my dog"}) == 1  # an edit: the alt text changed
        assert store.set_alt_texts(2, {1: "my dog"}) == 0
        assert keys(store.search(q, [10], 2, terms=query_terms("red circle"))) == [(5, 1), (1, 1)]
        assert keys(store.search(q, [11], 5, terms=query_terms("red circle"))) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-0.99, 0.99),
            st.sampled_from([None, "a red circle", "red circles!", "a blue square", "red"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_fusion_keeps_both_promises(
    tmp_path_factory: pytest.TempPathFactory, drawn: list
) -> None:
    q = unit(1)
    images = [(ref(i + 1), picture(s, q, i + 10), alt) for i, (s, alt) in enumerate(drawn)]
    says = {r.key for r, _, alt in images if alt in ("a red circle", "red circles!")}
    with store_with(tmp_path_factory.mktemp("f") / "i.sqlite3", images) as store:
        hits = store.search(q, [10], len(images), terms=query_terms("a red circle"))
    order = keys(hits)
    without = {r.key for r, _, alt in images if alt is None}
    bare = {hit.ref.key: hit.score for hit in hits if hit.ref.key in without}
    assert sorted(order) == sorted(r.key for r, _, _ in images)
    for i, hit in enumerate(hits):
        if hit.ref.key in says:  # above every image matched by picture alone
            assert all(key not in bare for key in order[:i])
        elif hit.ref.key not in bare:  # alt text that does not say it: never above a better bare
            assert all(score <= hit.score for key, score in bare.items() if key in order[i:])


def test_an_example_image_is_never_among_its_own_results(tmp_path: Path) -> None:
    q = unit(7)
    images = [(ref(m), picture(s, q, m), None) for m, s in ((1, 1.0), (2, 0.9), (3, 0.5))]
    with store_with(tmp_path / "i.sqlite3", images) as store:
        store.add_pending([ref(4)])
        store.add([(ref(4), "h1", picture(1.0, q, 1))])  # the same file as message 1
        excluded = Excluded((2, 1), "h1")
        assert keys(store.search(q, [10], 3, excluded=excluded)) == [(3, 1)]
        # Nothing else excluded: of two equal scores, the newer message comes first.
        assert keys(store.search(q, [10], 2, excluded=Excluded(None, "h3"))) == [(4, 1), (1, 1)]


def test_earlier_images_are_the_same_file_or_close_enough_and_older(tmp_path: Path) -> None:
    q = unit(3)
    images = [
        (ref(1), picture(0.99, q, 1), None),
        (ref(2, channel=11), picture(1.0, q, 2), None),  # another channel: never compared
        (ref(3), picture(0.80, q, 3), None),  # not close enough
        (ref(5), picture(1.0, q, 5), None),  # posted after
    ]
    with store_with(tmp_path / "i.sqlite3", images) as store:
        store.add_pending([ref(4)])
        store.add([(ref(4), "h3", picture(0.80, q, 3))])  # the same file as message 3
        found = store.earlier("h3", q[None], [10], before=5, min_score=0.95)
        assert [(m.ref.message_id, m.identical) for m in found] == [
            (1, False),
            (3, True),
            (4, True),
        ]
        assert found[0].score == pytest.approx(0.99, abs=1e-5)


def test_an_animation_scores_its_best_frame_and_keeps_its_frames(tmp_path: Path) -> None:
    q = unit(5)
    frames = np.stack([picture(s, q, 20 + i) for i, s in enumerate((0.1, 0.2, 0.95, 0.3))])
    db = tmp_path / "i.sqlite3"
    with IndexStore(db, "clip-a") as store:
        store.add_pending([ref(1), ref(2)])
        store.add([(ref(1), "gif", frames), (ref(2), "png", picture(0.5, q, 9))])
        best, second = store.search(q, [10], 2)
        assert best.ref == ref(1) and best.score == pytest.approx(0.95, abs=1e-5)
        assert second.ref == ref(2)
        # An example with several frames scores its best pair.
        (hit,) = store.search(np.stack([unit(99), frames[1]]), [10], 1)
        assert hit.ref == ref(1) and hit.score == pytest.approx(1.0, abs=1e-5)
    with IndexStore(db, "clip-a") as store:  # frames come back from the file
        assert store.search(q, [10], 1)[0].score == pytest.approx(0.95, abs=1e-5)
        cached = store.embedding_for_hash("gif", [10])
        assert cached is not None and cached.shape == (4, DIM)
        store.add_pending([ref(3)])
        store.add([(ref(3), "one", frames[:1])])
        store.remove_messages([1])
        assert keys(store.search(q, [10], 3)) == [(2, 1), (3, 1)]  # no frame of 1 is left


def test_a_version_2_index_upgrades_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = index_at(db, 2)
    vector = unit(4)
    conn.execute(
        "INSERT INTO images VALUES (1, 1, 1, 10, NULL, 100, 1.0, 'h', 'clip-a', ?, ?)",
        (DIM, vector.tobytes()),
    )
    conn.execute("INSERT INTO pending VALUES (2, 1, 1, 10, NULL, 100, 2.0, 0)")
    conn.close()
    with IndexStore(db, "clip-a") as store:
        (hit,) = store.search(vector, [10], 1)
        assert hit.ref.key == (1, 1) and hit.score == pytest.approx(1.0, abs=1e-6)
        assert store.pending() == [ref(2)]
        assert store.repost_channels == frozenset()
        assert store.set_reposts(1, 10, True) and store.repost_channels == {10}
        assert store.alt_text_channels == frozenset()
        assert store.set_alt_text(1, 11, True) and store.alt_text_channels == {11}
        assert not store.set_alt_text(1, 11, True)
        store.remove_channel(11)
        assert store.alt_text_channels == frozenset() and store.repost_channels == {10}
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
    assert conn.execute("SELECT frames, alt_text FROM images").fetchall() == [(1, None)]
    conn.close()
