"""Relational storage: one small interface over SQLite (embedded) and PostgreSQL (distributed).

Callers write portable SQL with ``?`` placeholders; the PostgreSQL adapter rewrites them to
``%s``. Schema statements may use ``{blob}``, ``{serial}`` and ``{real}``, filled in per dialect.
Each domain (accounts, state, ledger) owns its tables and runs ``db.migrate(name, statements)``
once at start-up; applied migrations are recorded, so re-running is a no-op.

The interface is synchronous: SQLite is, and a thread pool around it (``anyio.to_thread``) is
how the async edge calls it. Vendor exceptions are translated here: into ``UnstorableValue``
when the database refuses a value (integer out of range, bad character: the data's fault), else
into ``StorageError``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from feedserver.errors import Conflict, StorageError, UnstorableValue

Row = tuple[Any, ...]
Params = Sequence[Any]
Dialect = Literal["sqlite", "postgresql"]

_DIALECT_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"},
    "postgresql": {"blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"},
}


class Cursor(Protocol):
    def execute(self, sql: str, params: Params = ()) -> Cursor: ...
    def fetchone(self) -> Row | None: ...
    def fetchall(self) -> list[Row]: ...
    @property
    def rowcount(self) -> int: ...


class Database(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own transaction; returns the row count."""

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    def transaction(self) -> Any:
        """Context manager yielding a cursor; commits on success, rolls back on error."""

    def migrate(self, name: str, statements: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def _schema(dialect: Dialect, statement: str) -> str:
    return statement.format(**_DIALECT_TYPES[dialect])


class _Base:
    dialect: Dialect

    @contextmanager
    def transaction(self) -> Iterator[Any]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def execute(self, sql: str, params: Params = ()) -> int:
        with self.transaction() as cur:
            cur.execute(sql, params)
            return int(cur.rowcount)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self.transaction() as cur:
            for row in rows:
                cur.execute(sql, row)

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        with self.transaction() as cur:
            row: Row | None = cur.execute(sql, params).fetchone()
            return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        with self.transaction() as cur:
            rows: list[Row] = cur.execute(sql, params).fetchall()
            return rows

    def _lock_migrations(self, cur: Any) -> None:
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
                cur.execute(_schema(self.dialect, statement))
            cur.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, CURRENT_TIMESTAMP)",
                (name,),
            )


def _enable_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch to WAL. The switch needs an exclusive lock that SQLite's busy handler does not
    wait for when another connection is opening the same new file, so retry briefly."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise StorageError(f"database error: {exc}") from exc
            time.sleep(0.02 * (attempt + 1))


class SQLiteDatabase(_Base):
    """One connection per thread, WAL journal so readers never block the single writer."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.RLock()
        self._all: list[sqlite3.Connection] = []

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            with self._lock:
                _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            cur.execute("ROLLBACK")
            raise Conflict(f"constraint violated: {exc}") from exc
        except (sqlite3.DataError, OverflowError) as exc:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise UnstorableValue(f"value rejected by the database: {exc}") from exc
        except sqlite3.Error as exc:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise StorageError(f"database error: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


_PLACEHOLDER = re.compile(r"\?")


class _PgCursor:
    """Adapts ``?`` placeholders to psycopg's ``%s`` (literal ``%`` doubled)."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Params = ()) -> _PgCursor:
        self._cur.execute(_PLACEHOLDER.sub("%s", sql.replace("%", "%%")), tuple(params))
        return self

    def fetchone(self) -> Row | None:
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[Row]:
        return [tuple(r) for r in self._cur.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


class PostgresDatabase(_Base):
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        import psycopg_pool

        try:
            self._pool = psycopg_pool.ConnectionPool(
                url, min_size=min_size, max_size=max_size, open=True, timeout=30
            )
            self._pool.wait(timeout=30)
        except Exception as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc

    def _lock_migrations(self, cur: Any) -> None:
        # Several processes starting at once would otherwise race on CREATE TABLE IF NOT EXISTS
        # (a unique violation in pg_type); the lock is released at commit.
        cur.execute("SELECT pg_advisory_xact_lock(?)", (0x66656564,))

    @contextmanager
    def transaction(self) -> Iterator[_PgCursor]:
        import psycopg

        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield _PgCursor(cur)
        except psycopg.errors.IntegrityError as exc:
            raise Conflict(f"constraint violated: {exc}") from exc
        except psycopg.errors.DataError as exc:
            raise UnstorableValue(f"value rejected by the database: {exc}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"database error: {exc}") from exc

    def close(self) -> None:
        self._pool.close()


def connect(url: str) -> Database:
    """``sqlite:///path``, ``sqlite://:memory:`` or ``postgresql://...``."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        # SQLAlchemy's convention: sqlite:///relative, sqlite:////absolute.
        path = path[1:] if path.startswith("/") else path
        return SQLiteDatabase(":memory:" if path in {":memory:", "/:memory:"} else path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    raise ValueError(f"unsupported database URL {url!r}")
