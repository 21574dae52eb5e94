"""Relational storage: the ``Database`` protocol (``base``), SQLite (embedded) and PostgreSQL
(distributed), chosen by ``connect(url)``.

The protocol, its types and the SQLite implementation are re-exported here; the PostgreSQL
one lives in ``feedserver.storage.db.postgres`` (imported only when a ``postgresql://`` URL
is opened, so embedded deployments never load psycopg).
"""

from __future__ import annotations

from feedserver.storage.db.base import Cursor, Database, Dialect, Params, Row
from feedserver.storage.db.sqlite import SQLiteDatabase

__all__ = ["Cursor", "Database", "Dialect", "Params", "Row", "SQLiteDatabase", "connect"]


def connect(url: str) -> Database:
    """``sqlite:///path``, ``sqlite://:memory:`` or ``postgresql://...``; raises
    ``StorageError`` when the server cannot be reached, ``ValueError`` for another scheme."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        # SQLAlchemy's convention: sqlite:///relative, sqlite:////absolute.
        path = path[1:] if path.startswith("/") else path
        return SQLiteDatabase(":memory:" if path in {":memory:", "/:memory:"} else path)
    if url.startswith(("postgresql://", "postgres://")):
        from feedserver.storage.db.postgres import PostgresDatabase

        return PostgresDatabase(url)
    raise ValueError(f"unsupported database URL {url!r}")
