"""The ``Database`` contract: the same behaviour on SQLite (``tests/unit/storage/db``) and
PostgreSQL (``tests/integration/storage``). A test module joins by defining a ``database``
fixture and importing everything from here."""

from __future__ import annotations

import threading

import pytest

from feedserver.errors import Conflict, StorageError
from feedserver.storage.db import Database

SCHEMA = [
    "CREATE TABLE items (id {serial}, name TEXT NOT NULL UNIQUE, payload {blob}, score {real})",
]


def items_table(db: Database) -> None:
    db.migrate("test-items-1", SCHEMA)


def test_migrate_is_idempotent(database: Database) -> None:
    items_table(database)
    items_table(database)  # a second run is a no-op, not "table already exists"
    rows = database.fetchall("SELECT name FROM schema_migrations WHERE name = ?", ("test-items-1",))
    assert rows == [("test-items-1",)]


def test_failed_migration_is_not_recorded(database: Database) -> None:
    items_table(database)
    with pytest.raises(StorageError):
        database.migrate("broken", ["CREATE TABLE ok_table (x INTEGER)", "NOT SQL AT ALL"])
    assert database.fetchone("SELECT 1 FROM schema_migrations WHERE name = ?", ("broken",)) is None
    # The whole migration rolled back, so a fixed one can run afterwards.
    database.migrate("broken", ["CREATE TABLE ok_table (x INTEGER)"])


def test_placeholders_and_round_trip(database: Database) -> None:
    items_table(database)
    assert database.execute(
        "INSERT INTO items (name, payload, score) VALUES (?, ?, ?)", ("a%b?", b"\x00\xff", 1.5)
    ) == 1
    row = database.fetchone("SELECT name, payload, score FROM items WHERE name = ?", ("a%b?",))
    assert row is not None
    assert row[0] == "a%b?"
    assert bytes(row[1]) == b"\x00\xff"
    assert row[2] == 1.5
    # A literal % in SQL survives the PostgreSQL placeholder rewrite.
    assert database.fetchall("SELECT name FROM items WHERE name LIKE 'a%'") == [("a%b?",)]


def test_executemany_and_fetchall_order(database: Database) -> None:
    items_table(database)
    database.executemany("INSERT INTO items (name) VALUES (?)", [(f"n{i}",) for i in range(5)])
    assert database.fetchall("SELECT name FROM items ORDER BY id") == [(f"n{i}",) for i in range(5)]
    assert database.fetchone("SELECT name FROM items WHERE name = ?", ("missing",)) is None


def test_unique_violation_is_conflict_and_nothing_is_lost(database: Database) -> None:
    items_table(database)
    database.execute("INSERT INTO items (name) VALUES (?)", ("x",))
    with pytest.raises(Conflict):
        database.execute("INSERT INTO items (name) VALUES (?)", ("x",))
    assert database.fetchall("SELECT name FROM items") == [("x",)]


def test_transaction_rolls_back_on_error(database: Database) -> None:
    items_table(database)
    with pytest.raises(RuntimeError), database.transaction() as cur:
        cur.execute("INSERT INTO items (name) VALUES (?)", ("gone",))
        raise RuntimeError("boom")
    with pytest.raises(Conflict), database.transaction() as cur:
        cur.execute("INSERT INTO items (name) VALUES (?)", ("also-gone",))
        cur.execute("INSERT INTO items (name) VALUES (?)", ("also-gone",))
    assert database.fetchall("SELECT name FROM items") == []
    # The connection is usable afterwards.
    with database.transaction() as cur:
        cur.execute("INSERT INTO items (name) VALUES (?)", ("kept",))
        assert cur.rowcount == 1
    assert database.fetchall("SELECT name FROM items") == [("kept",)]


def test_sql_error_is_storage_error(database: Database) -> None:
    with pytest.raises(StorageError):
        database.fetchall("SELECT * FROM no_such_table")
    assert database.fetchone("SELECT 1") == (1,)


def test_concurrent_migrations(database: Database) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            items_table(database)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert database.fetchone("SELECT COUNT(*) FROM schema_migrations") == (1,)
