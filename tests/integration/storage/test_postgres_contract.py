"""The ``Database`` contract (``tests/contracts/db.py``) on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feedserver.errors import Conflict
from feedserver.storage.db import Database
from feedserver.storage.db.postgres import PostgresDatabase
from tests.contracts.db import *  # noqa: F403 - the contract's tests run here

pytestmark = pytest.mark.integration


@pytest.fixture
def database(fresh_postgres_url: str) -> Iterator[Database]:
    db = PostgresDatabase(fresh_postgres_url, max_size=4)
    try:
        yield db
    finally:
        db.close()


def test_lone_statements_commit_alone_and_leave_transactions_atomic(
        fresh_postgres_url: str) -> None:
    # ``execute``/``fetchone``/``fetchall`` run in autocommit (one round trip, no BEGIN/COMMIT)
    # on a pooled connection; with ONE connection in the pool, every transaction after them
    # runs on that same connection: a transaction (or ``executemany``) that fails halfway
    # must still keep nothing, right after a lone statement and after a failed one.
    db = PostgresDatabase(fresh_postgres_url, min_size=1, max_size=1)
    try:
        db.execute("CREATE TABLE lone (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        assert db.execute("INSERT INTO lone (k, v) VALUES (?, ?)", (1, 10)) == 1
        with pytest.raises(Conflict):
            db.execute("INSERT INTO lone (k, v) VALUES (?, ?)", (1, 11))
        assert db.fetchone("UPDATE lone SET v = v + 1 WHERE k = ? RETURNING v", (1,)) == (11,)
        with pytest.raises(Conflict), db.transaction() as cur:
            cur.execute("INSERT INTO lone (k, v) VALUES (?, ?)", (2, 20))
            cur.execute("INSERT INTO lone (k, v) VALUES (?, ?)", (1, 12))  # conflict: all undone
        with pytest.raises(Conflict):
            db.executemany("INSERT INTO lone (k, v) VALUES (?, ?)", [(3, 30), (1, 13)])
        assert db.fetchall("SELECT k, v FROM lone ORDER BY k") == [(1, 11)]
    finally:
        db.close()
