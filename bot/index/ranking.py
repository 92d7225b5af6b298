"""How the index answers a search, and which earlier images a new one repeats.

A text query ranks by picture score + 2 x said, where said is 1 when the image's alt text says
what the query says (bot.index.alt_text) and 0 otherwise: a picture's cosine is between -1 and
1, so an image whose alt text says it comes before every image matched by picture alone, each
group in the order of its pictures' scores, and an alt text that does not say it changes
nothing. An example image is never among its own results, nor is any file identical to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

import numpy.typing as npt

from bot.index import queries
from bot.index.alt_text import Terms
from bot.index.frame_vectors import FrameVectors
from bot.index.refs import Hit, ImageRef, Key


@dataclass(frozen=True)
class Excluded:
    """An example image: its own entry (if it has one) and every file with its bytes."""

    key: Key | None
    content_hash: str


@dataclass(frozen=True)
class Earlier:
    """An image posted before a new one that it repeats."""

    ref: ImageRef
    score: float  # the best cosine between their frames
    identical: bool  # the very same file (SHA-256)


def rank(
    conn: sqlite3.Connection,
    vectors: FrameVectors,
    model_id: str,
    query: npt.ArrayLike,
    channel_ids: Collection[int],
    top: int,
    terms: Terms = (),
    excluded: Excluded | None = None,
) -> list[Hit]:
    """The ``top`` best images for ``query`` (a text's row, or an example's frames)."""
    skip: set[Key | None] = set()
    if excluded is not None:
        twins = queries.with_hash(conn, excluded.content_hash, model_id, channel_ids)
        skip = {excluded.key, *twins}
    found = vectors.search(query, channel_ids, top + len(skip))
    hits = [hit for hit in found if hit.ref.key not in skip]
    if terms:
        said = [k for k in queries.alt_matches(conn, terms, model_id, channel_ids) if k not in skip]
        first = [Hit(h.ref, h.score, alt=True) for h in vectors.scores(query, said, top)]
        shown = {hit.ref.key for hit in first}
        hits = first + [hit for hit in hits if hit.ref.key not in shown]
    return hits[:top]


def earlier(
    conn: sqlite3.Connection,
    vectors: FrameVectors,
    model_id: str,
    content_hash: str,
    frames: npt.ArrayLike,
    channel_ids: Collection[int],
    before: int,
    min_score: float,
) -> list[Earlier]:
    """The images of these channels posted before message ``before`` that are the same file,
    or whose cosine with the image is at least ``min_score``; oldest first."""
    same = [
        k for k in queries.with_hash(conn, content_hash, model_id, channel_ids) if k[0] < before
    ]
    found = {
        hit.ref.key: Earlier(hit.ref, hit.score, identical=False)
        for hit in vectors.above(frames, channel_ids, min_score)
        if hit.ref.message_id < before
    }
    for hit in vectors.scores(frames, same):
        found[hit.ref.key] = Earlier(hit.ref, hit.score, identical=True)
    return sorted(found.values(), key=lambda match: match.ref.key)
