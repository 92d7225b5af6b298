"""Read marks in the index file: where a catch-up stops reading a channel (images or not),
never moving back, and gone with the channel, the server, or an IGNORE_CHANNELS entry."""

from __future__ import annotations

from pathlib import Path

from bot.index.store import IndexStore
from tests.old_index import index_at
from tests.test_index import item, queue_and_add, ref

GENERAL, THREAD, OTHER, ELSEWHERE = 10, 11, 20, 30


def marked(store: IndexStore) -> list[tuple[int, int]]:
    return [(channel, store.last_message_id(channel) or 0) for _, channel in store.channels()]


def test_a_channel_without_images_is_caught_up_from_its_mark(tmp_path: Path) -> None:
    with IndexStore(tmp_path / "index.sqlite3", "clip") as store:
        assert store.channels() == []
        store.mark_read([(GENERAL, 1, None, 500)])
        assert store.channels() == [(1, GENERAL)]
        assert store.last_message_id(GENERAL, before=400) == 500


def test_a_mark_wins_over_uploads_above_it_and_never_moves_back(tmp_path: Path) -> None:
    """Uploads seen live may lie above a stretch a catch-up has yet to read, which the mark,
    written only once nothing below it is unread, does not pass."""
    with IndexStore(tmp_path / "index.sqlite3", "clip") as store:
        queue_and_add(store, [item(ref(300, channel=GENERAL))])
        store.add_pending([ref(400, channel=GENERAL)])
        assert store.last_message_id(GENERAL) == 400  # no mark: an index from before them
        store.mark_read([(GENERAL, 1, None, 200)])
        assert store.last_message_id(GENERAL) == 200
        store.mark_read([(GENERAL, 1, None, 700)])
        store.mark_read([(GENERAL, 1, None, 600)])  # written late, from an earlier take
        assert store.last_message_id(GENERAL) == 700


def test_marks_go_with_their_channel_server_or_ignored_channel(tmp_path: Path) -> None:
    with IndexStore(tmp_path / "index.sqlite3", "clip") as store:
        marks = [
            (GENERAL, 1, None, 100),
            (THREAD, 1, GENERAL, 101),
            (OTHER, 1, None, 102),
            (ELSEWHERE, 2, None, 103),
        ]
        store.mark_read(marks)
        store.remove_channel(GENERAL)  # its thread too
        assert marked(store) == [(OTHER, 102), (ELSEWHERE, 103)]
        store.remove_guild(2)
        assert marked(store) == [(OTHER, 102)]
        store.mark_read(marks)
        store.remove_ignored([OTHER, GENERAL])
        assert marked(store) == [(ELSEWHERE, 103)]


def test_deleting_the_marked_message_keeps_the_mark(tmp_path: Path) -> None:
    """Everything up to it was read all the same."""
    with IndexStore(tmp_path / "index.sqlite3", "clip") as store:
        store.mark_read([(GENERAL, 1, None, 100)])
        store.remove_messages([100])
        assert store.last_message_id(GENERAL) == 100


def test_a_version_7_index_gains_the_table(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    index_at(db, 7).close()
    with IndexStore(db, "clip") as store:
        store.mark_read([(GENERAL, 1, None, 100)])
        assert store.last_message_id(GENERAL) == 100
