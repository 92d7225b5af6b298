"""Index files as an earlier version of the schema left them, for the tests of upgrades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.index import schema


def index_at(path: Path, version: int) -> sqlite3.Connection:
    """A new index file at schema `version`, open (autocommit) for the rows that version had."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in range(1, version + 1):
        schema.MIGRATIONS[step](conn)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn
