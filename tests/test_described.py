"""The descriptions the bot posted (automatic alt text), as the index keeps them: found by the
description's id, taken along when either message is deleted, gone with their channel (a
thread's with its parent) or server, and kept across restarts."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from bot.index import schema
from bot.index.described import Description, covers_text
from bot.index.store import IndexStore
from tests.old_index import index_at


def described(
    number: int, channel: int = 10, parent: int | None = None, guild: int = 1
) -> Description:
    return Description(
        description_id=1000 + number,
        message_id=number,
        channel_id=channel,
        parent_id=parent,
        guild_id=guild,
        poster_id=500 + number,
    )


def test_a_description_is_found_and_forgotten_by_its_own_id(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite3"
    with IndexStore(db, "clip") as store:
        for number in (1, 2, 3):
            store.add_description(described(number))
    with IndexStore(db, "clip") as store:  # after a restart
        assert store.description(1001) == described(1)
        assert store.description(1) is None  # the original is no description
        store.forget_descriptions([1, 99])  # an original's ID: its description's record stays
        assert store.descriptions_of(1) == [described(1)]
        store.forget_descriptions([1001, 1002])  # taken down, or deleted by someone
        assert store.description(1001) is None and store.descriptions_of(1) == []
        assert store.description(1002) is None and store.description(1003) == described(3)
        store.forget_descriptions([])


def test_descriptions_go_with_their_channel_its_threads_and_the_server(tmp_path: Path) -> None:
    with IndexStore(tmp_path / "index.sqlite3", "clip") as store:
        store.add_description(described(1, channel=10))
        store.add_description(described(2, channel=20, parent=10))  # a thread of channel 10
        store.add_description(described(3, channel=30))
        store.add_description(described(4, channel=40, guild=2))
        store.remove_channel(10)
        assert [store.description(1000 + n) is None for n in (1, 2, 3, 4)] == [
            True, True, False, False]  # fmt: skip
        store.remove_guild(2)
        assert store.description(1004) is None
        assert store.description(1003) == described(3, channel=30)


def test_a_version_4_index_gains_the_table(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    index_at(db, 4).close()
    with IndexStore(db, "clip") as store:
        store.add_description(described(1))
        assert store.description(1001) == described(1)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
    conn.close()


def test_what_a_description_covers_is_kept_and_older_rows_do_not_know(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = index_at(db, 8)
    conn.execute("INSERT INTO descriptions VALUES (1001, 1, 10, NULL, 1, 501)")  # version 8's
    conn.close()
    covering = dataclasses.replace(described(2), covers=covers_text([(7, False), (8, True)]))
    with IndexStore(db, "clip") as store:
        store.add_description(covering)
        assert store.descriptions_of(1) == [described(1)]
        assert store.descriptions_of(1)[0].covered is None
        assert store.descriptions_of(2)[0].covered == ((7, False), (8, True))
        assert store.descriptions_of(3) == []
