"""The relational database protocol: one small interface over SQLite (embedded) and
PostgreSQL (distributed).

Callers write portable SQL with ``?`` placeholders; the PostgreSQL adapter rewrites them to
``%s``. Schema statements may use ``{blob}``, ``{serial}`` and ``{real}``, filled in per dialect.
Each domain (accounts, state, ledger) owns its tables and runs ``db.migrate(name, statements)``
once at start-up; applied migrations are recorded, so re-running is a no-op.

The interface is synchronous: SQLite is, and a thread pool around it (``anyio.to_thread``) is
how the async edge calls it. Every method raises only feedserver errors: ``Conflict`` when a
constraint is violated (the transaction is rolled back), ``UnstorableValue`` when the database
refuses a value (integer out of range, bad character: the data's fault), ``StorageError`` for
any other database failure. Vendor exceptions (sqlite3, psycopg) are translated inside the
implementations and never leave them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]
Dialect = Literal["sqlite", "postgresql"]

_DIALECT_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"},
    "postgresql": {"blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"},
}


class Cursor(Protocol):
    """A statement runner inside one transaction (``Database.transaction``)."""

    def execute(self, sql: str, params: Params = (), /) -> Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Params], /) -> Cursor: ...
    def fetchone(self) -> Row | None: ...
    def fetchall(self) -> list[Row]: ...
    @property
    def rowcount(self) -> int: ...


class Database(Protocol):
    dialect: Dialect
    # True when a read is a local call that never waits on a writer or the network (SQLite in
    # WAL mode, on this machine's disk): an event loop may run ``fetchone``/``fetchall``
    # inline, which costs less than the worker-thread hop. False for PostgreSQL.
    local_reads: bool

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own transaction; returns the row count.
        Raises ``Conflict``, ``StorageError``."""

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """One statement per row, all in one transaction. Raises ``Conflict``,
        ``StorageError``."""

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Raises ``StorageError``."""

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Raises ``StorageError``."""

    def transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor in a transaction: committed when the block ends, rolled back when it
        raises. Raises ``Conflict`` (constraint violated), ``StorageError``."""

    def migrate(self, name: str, statements: Sequence[str]) -> None:
        """Apply ``statements`` once per database (recorded under ``name``); concurrent
        starters are serialised. Raises ``StorageError``."""

    def close(self) -> None: ...


def schema_statement(dialect: Dialect, statement: str) -> str:
    """``statement`` with ``{blob}``, ``{serial}`` and ``{real}`` filled in for ``dialect``."""
    return statement.format(**_DIALECT_TYPES[dialect])


class BaseDatabase:
    """What both implementations share, built on their ``transaction()``."""

    dialect: Dialect
    local_reads: bool = False

    def transaction(self) -> AbstractContextManager[Cursor]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _statement(self) -> AbstractContextManager[Cursor]:
        """A cursor for ONE statement (``execute``, ``fetchone``, ``fetchall``): a
        transaction here; a database that runs a lone statement atomically without one
        (PostgreSQL in autocommit) overrides it."""
        return self.transaction()

    def execute(self, sql: str, params: Params = ()) -> int:
        with self._statement() as cur:
            cur.execute(sql, params)
            return int(cur.rowcount)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        # its rows commit together or not at all: always a transaction
        with self.transaction() as cur:
            cur.executemany(sql, rows)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with self._statement() as cur:
            return cur.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with self._statement() as cur:
            return cur.execute(sql, params).fetchall()

    def _lock_migrations(self, cur: Cursor) -> None:
        """Serialise migrations across processes (SQLite's BEGIN IMMEDIATE already does)."""

    def migrate(self, name: str, statements: Sequence[str]) -> None:
        with self.transaction() as cur:
            self._lock_migrations(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            if cur.execute(
                "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)
            ).fetchone():
                return
            for statement in statements:
                cur.execute(schema_statement(self.dialect, statement))
            cur.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, CURRENT_TIMESTAMP)",
                (name,),
            )
