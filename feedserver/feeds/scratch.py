"""Scratch SQLite files for one build's intermediate rows (snapshot staging, diffs, advances).

A crash discards the whole build, so durability buys nothing: journal and sync are off.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def scratch_db(path: Path) -> sqlite3.Connection:
    """A SQLite file for one build's intermediate rows (staging, diffs, updates)."""
    conn = sqlite3.connect(path, isolation_level=None)
    # A scratch database: durability buys nothing, a crash discards the whole build anyway.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("PRAGMA cache_size=-32000")
    return conn
