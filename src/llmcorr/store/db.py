"""Open the SQLite store: the one place that sets WAL, foreign keys and the busy timeout, then migrates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .migrations import migrate

BUSY_TIMEOUT_MS = 30_000


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection to the store at `path` (created if missing), migrated to the current schema."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, no fsync per commit
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn
