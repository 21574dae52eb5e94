"""``Database`` on PostgreSQL (distributed mode): a psycopg connection pool.

The only module that imports psycopg. ``?`` placeholders become ``%s``; psycopg's exceptions
are translated here: a constraint violation is ``Conflict``, a value the database refuses
(integer out of range, bad character: the data's fault) ``UnstorableValue``, any other error
``StorageError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from feedserver.errors import Conflict, StorageError, UnstorableValue
from feedserver.storage.db.base import BaseDatabase, Cursor, Dialect, Params, Row

_PLACEHOLDER = re.compile(r"\?")


class _PgCursor:
    """Adapts ``?`` placeholders to psycopg's ``%s`` (literal ``%`` doubled)."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Params = (), /) -> _PgCursor:
        self._cur.execute(_PLACEHOLDER.sub("%s", sql.replace("%", "%%")), tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Params], /) -> _PgCursor:
        self._cur.executemany(_PLACEHOLDER.sub("%s", sql.replace("%", "%%")),
                              [tuple(row) for row in rows])
        return self

    def fetchone(self) -> Row | None:
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[Row]:
        return [tuple(r) for r in self._cur.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


class PostgresDatabase(BaseDatabase):
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        try:
            self._pool = psycopg_pool.ConnectionPool(
                url, min_size=min_size, max_size=max_size, open=True, timeout=30
            )
            self._pool.wait(timeout=30)
        except Exception as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc

    def _lock_migrations(self, cur: Cursor) -> None:
        # Several processes starting at once would otherwise race on CREATE TABLE IF NOT EXISTS
        # (a unique violation in pg_type); the lock is released at commit.
        cur.execute("SELECT pg_advisory_xact_lock(?)", (0x66656564,))

    @contextmanager
    def transaction(self) -> Iterator[_PgCursor]:
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
