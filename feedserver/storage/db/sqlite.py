"""``Database`` on SQLite: the embedded default (one file, WAL journal).

sqlite3 exceptions are translated here: a constraint violation is ``Conflict``, a value the
database refuses (integer out of range) ``UnstorableValue``, any other error ``StorageError``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feedserver.errors import Conflict, StorageError, UnstorableValue
from feedserver.storage.db.base import BaseDatabase, Dialect, Params, Row


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


class SQLiteDatabase(BaseDatabase):
    """One connection per thread, WAL journal so readers never block the single writer."""

    dialect: Dialect = "sqlite"
    local_reads = True  # WAL: readers never wait for the writer

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

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """A read in its own implicit read transaction: no write lock (``transaction()``
        takes one), so it never waits behind a writer."""
        try:
            row: Row | None = self._conn().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"database error: {exc}") from exc
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            rows: list[Row] = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"database error: {exc}") from exc
        return rows

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
