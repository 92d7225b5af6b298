"""The index's SQLite file: its tables, its migrations, and how the connection is opened.

Every image the index knows is in exactly one of two tables: ``pending`` (seen, not yet
embedded) or ``images`` (embedded). Only IDs are stored, never attachment URLs (they expire).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 9

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


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    # Members who said `!optout`, per server; guild 0 stands for their DM with the bot.
    conn.execute(
        "CREATE TABLE optouts (guild_id INTEGER NOT NULL, author_id INTEGER NOT NULL, "
        "PRIMARY KEY (guild_id, author_id))"
    )


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    # One embedding per frame (an animation has up to 4, concatenated); images indexed before
    # keep the one of their first frame. Alt text as written, and its words for matching
    # (casefolded, space-separated, with a space at each end). Channels that check reposts.
    for statement in (
        "ALTER TABLE images ADD COLUMN frames INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE images ADD COLUMN alt_text TEXT",
        "ALTER TABLE images ADD COLUMN alt_words TEXT",
        "ALTER TABLE pending ADD COLUMN alt_text TEXT",
        "CREATE INDEX images_alt ON images (model_id, channel_id) WHERE alt_words IS NOT NULL",
        "CREATE TABLE reposts (channel_id INTEGER PRIMARY KEY, guild_id INTEGER NOT NULL)",
    ):
        conn.execute(statement)


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    # Channels where images posted without alt text get an automatic description.
    conn.execute(
        "CREATE TABLE alt_text_channels (channel_id INTEGER PRIMARY KEY, guild_id INTEGER NOT NULL)"
    )


def _migrate_to_5(conn: sqlite3.Connection) -> None:
    # The descriptions posted there: the message each describes and who posted it, so that a
    # 🗑️ from the poster can delete one and deleting the original takes it along.
    for statement in (
        "CREATE TABLE descriptions (description_id INTEGER PRIMARY KEY, "
        "message_id INTEGER NOT NULL, channel_id INTEGER NOT NULL, parent_id INTEGER, "
        "guild_id INTEGER NOT NULL, poster_id INTEGER NOT NULL)",
        "CREATE INDEX descriptions_message ON descriptions (message_id)",
    ):
        conn.execute(statement)


def _migrate_to_6(conn: sqlite3.Connection) -> None:
    # The `!optin` message of each member who opted back in: their uploads from before it,
    # posted while they were out, stay out when catch-up or `!index` reads them later.
    conn.execute(
        "CREATE TABLE optins (guild_id INTEGER NOT NULL, author_id INTEGER NOT NULL, "
        "message_id INTEGER NOT NULL, PRIMARY KEY (guild_id, author_id))"
    )


def _migrate_to_7(conn: sqlite3.Connection) -> None:
    # The `!forget` message of each member forgotten: their uploads from before it stay out
    # when catch-up or `!index` reads them again.
    conn.execute(
        "CREATE TABLE forgets (guild_id INTEGER NOT NULL, author_id INTEGER NOT NULL, "
        "message_id INTEGER NOT NULL, PRIMARY KEY (guild_id, author_id))"
    )


def _migrate_to_8(conn: sqlite3.Connection) -> None:
    # The newest message the bot has seen in each channel, images or not: where a catch-up
    # after downtime stops reading (bot.chat.read_marks).
    conn.execute(
        "CREATE TABLE read_marks (channel_id INTEGER PRIMARY KEY, guild_id INTEGER NOT NULL, "
        "parent_id INTEGER, message_id INTEGER NOT NULL)"
    )


def _migrate_to_9(conn: sqlite3.Connection) -> None:
    # What each description covers (bot.index.described.Covers), so that an edit of a message
    # no longer in discord.py's cache is still compared with what was described.
    conn.execute("ALTER TABLE descriptions ADD COLUMN covers TEXT")


# MIGRATIONS[v] upgrades a database at version v - 1 to version v, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_to_1,
    2: _migrate_to_2,
    3: _migrate_to_3,
    4: _migrate_to_4,
    5: _migrate_to_5,
    6: _migrate_to_6,
    7: _migrate_to_7,
    8: _migrate_to_8,
    9: _migrate_to_9,
}


class NewerSchema(RuntimeError):
    """The file was written by a newer version of the bot (rolled back after an upgrade)."""


class OldSQLite(RuntimeError):
    """This Python's SQLite lacks what the index's statements use."""


def sqlite_too_old() -> str | None:
    """Why this Python's SQLite cannot keep the index: DELETE ... RETURNING and an upsert
    without a conflict target need 3.35. An older one (Ubuntu 20.04's 3.31, a Python built
    against Debian 11's 3.34) would open it and then fail every write."""
    if sqlite3.sqlite_version_info >= (3, 35):
        return None
    return (
        f"this Python's SQLite is {sqlite3.sqlite_version}, and the image index needs 3.35 or "
        "newer (the Docker image has it)"
    )


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection in WAL mode, migrated to SCHEMA_VERSION."""
    if too_old := sqlite_too_old():
        raise OldSQLite(too_old)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Big pages: a 512-dim row (about 2.2 KB) fills a 4 KB page alone; 16 KB pages hold
        # seven, halving the file. Only takes effect on a new file, before WAL is on.
        conn.execute("PRAGMA page_size=16384")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise NewerSchema(
            f"{path} has schema version {version}, newer than this code's "
            f"{SCHEMA_VERSION}: upgrade the bot"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # Explicit BEGIN/COMMIT: Python 3.11's implicit transactions do not cover DDL.
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target](conn)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("image index %s migrated to schema version %d", path, target)
