"""``Database`` on PostgreSQL (distributed mode): a psycopg connection pool.

The only module that imports psycopg. ``?`` placeholders become ``$1``, ``$2``... (psycopg's
raw cursors); psycopg's exceptions are translated here: a constraint violation is
``Conflict``, a value the database refuses (integer out of range, bad character: the data's
fault) ``UnstorableValue``, any other error ``StorageError``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from feedserver.errors import Conflict, StorageError, UnstorableValue
from feedserver.storage.db.base import BaseDatabase, Cursor, Dialect, Params, Row

_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """Portable SQL (``?`` placeholders) as PostgreSQL's own (``$1``, ``$2``...), run through
    psycopg's raw cursors: psycopg parses a ``%s`` query in Python each time it has more
    than 50 parameters (the ledger's multi-row inserts: a tenth of a server's CPU per
    on-demand lookup); this conversion is cached per statement text."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", sql)


@contextmanager
def _typed_errors() -> Iterator[None]:
    """psycopg's errors as the storage layer's typed ones (one mapping for every cursor)."""
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise Conflict(f"constraint violated: {exc}") from exc
    except psycopg.errors.DataError as exc:
        raise UnstorableValue(f"value rejected by the database: {exc}") from exc
    except psycopg.Error as exc:
        raise StorageError(f"database error: {exc}") from exc


class AsyncReads:
    """Reads on the event loop, from a pool of autocommit connections of their own: no
    worker-thread hop, and no BEGIN/COMMIT round trips around a lone SELECT."""

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Raises ``StorageError``."""
        try:
            async with self._pool.connection() as conn, psycopg.AsyncRawCursor(conn) as cur:
                await cur.execute(_pg_sql(sql), tuple(params), binary=True)
                return [tuple(r) for r in await cur.fetchall()]
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StorageError(f"database error: {exc}") from exc


class _PgCursor:
    """Adapts ``?`` placeholders to PostgreSQL's ``$n`` (``_pg_sql``)."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Params = (), /) -> _PgCursor:
        self._cur.execute(_pg_sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Params], /) -> _PgCursor:
        self._cur.executemany(_pg_sql(sql), [tuple(row) for row in rows])
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
        self._url = url

    @property
    def url(self) -> str:
        """The URL this database was opened with (a child process opens the same one)."""
        return self._url

    def _lock_migrations(self, cur: Cursor) -> None:
        # Several processes starting at once would otherwise race on CREATE TABLE IF NOT EXISTS
        # (a unique violation in pg_type); the lock is released at commit.
        cur.execute("SELECT pg_advisory_xact_lock(?)", (0x66656564,))

    @contextmanager
    def transaction(self) -> Iterator[_PgCursor]:
        with _typed_errors(), self._pool.connection() as conn, conn.transaction(), \
                psycopg.RawCursor(conn) as cur:
            yield _PgCursor(cur)

    @contextmanager
    def _statement(self) -> Iterator[_PgCursor]:
        """A cursor for ONE statement on a pooled connection in autocommit: the statement is
        its own transaction (atomic, as PostgreSQL runs any lone statement), sent in one round
        trip instead of three (BEGIN, the statement, COMMIT)."""
        with _typed_errors(), self._pool.connection() as conn:
            conn.autocommit = True  # idle out of the pool: no transaction to end
            try:
                with psycopg.RawCursor(conn) as cur:
                    yield _PgCursor(cur)
            finally:
                if not conn.closed:
                    conn.autocommit = False  # back to the pool as it came

    @asynccontextmanager
    async def async_reads(self, *, max_size: int = 4) -> AsyncIterator[AsyncReads]:
        """``AsyncReads`` for the running event loop (their pool is closed on exit).
        Raises ``StorageError``."""
        pool = psycopg_pool.AsyncConnectionPool(
            self._url, min_size=1, max_size=max_size, open=False, timeout=30,
            kwargs={"autocommit": True})
        try:
            await pool.open(wait=True, timeout=30)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            yield AsyncReads(pool)
        finally:
            await pool.close()

    @asynccontextmanager
    async def listen(self, channel: str, *, keepalive: float) -> AsyncIterator[
        AsyncIterator[str]
    ]:
        """``LISTEN channel`` on a connection of its own (not the pool's), on the event loop:
        once entered, every notification committed afterwards is among the payloads, in
        commit order. A connection that stops answering is noticed within ``2 * keepalive``
        seconds (a probe after each quiet ``keepalive``): the iteration then raises
        ``StorageError``, as for any other failure, and nothing may be assumed about what was
        sent meanwhile."""
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self._url, autocommit=True), keepalive * 4)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except (psycopg.Error, TimeoutError) as exc:
            raise StorageError(f"cannot listen to {channel!r}: {exc}") from exc
        try:
            yield _payloads(conn, keepalive)
        finally:
            await conn.close()

    def close(self) -> None:
        self._pool.close()


async def _payloads(conn: psycopg.AsyncConnection[Any], keepalive: float) -> AsyncIterator[str]:
    while True:
        try:
            async for note in conn.notifies(timeout=keepalive):
                yield note.payload
            # Quiet for ``keepalive``: a round trip proves the connection (and so the stream
            # of notifications) is still there; notifications meanwhile wait in its backlog.
            await asyncio.wait_for(conn.execute("SELECT 1"), keepalive)
        except (psycopg.Error, TimeoutError) as exc:
            raise StorageError(f"notifications interrupted: {exc}") from exc
