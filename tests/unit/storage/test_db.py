"""Contract tests of the Database adapter: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from feedserver.errors import Conflict, StorageError
from feedserver.storage.db import Database, SQLiteDatabase, connect

SCHEMA = [
    "CREATE TABLE items (id {serial}, name TEXT NOT NULL UNIQUE, payload {blob}, score {real})",
]


def _items(db: Database) -> None:
    db.migrate("test-items-1", SCHEMA)


def test_migrate_is_idempotent(database: Database) -> None:
    _items(database)
    _items(database)  # a second run is a no-op, not "table already exists"
    rows = database.fetchall("SELECT name FROM schema_migrations WHERE name = ?", ("test-items-1",))
    assert rows == [("test-items-1",)]


def test_failed_migration_is_not_recorded(database: Database) -> None:
    _items(database)
    with pytest.raises(StorageError):
        database.migrate("broken", ["CREATE TABLE ok_table (x INTEGER)", "NOT SQL AT ALL"])
    assert database.fetchone("SELECT 1 FROM schema_migrations WHERE name = ?", ("broken",)) is None
    # The whole migration rolled back, so a fixed one can run afterwards.
    database.migrate("broken", ["CREATE TABLE ok_table (x INTEGER)"])


def test_placeholders_and_round_trip(database: Database) -> None:
    _items(database)
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
    _items(database)
    database.executemany("INSERT INTO items (name) VALUES (?)", [(f"n{i}",) for i in range(5)])
    assert database.fetchall("SELECT name FROM items ORDER BY id") == [(f"n{i}",) for i in range(5)]
    assert database.fetchone("SELECT name FROM items WHERE name = ?", ("missing",)) is None


def test_unique_violation_is_conflict_and_nothing_is_lost(database: Database) -> None:
    _items(database)
    database.execute("INSERT INTO items (name) VALUES (?)", ("x",))
    with pytest.raises(Conflict):
        database.execute("INSERT INTO items (name) VALUES (?)", ("x",))
    assert database.fetchall("SELECT name FROM items") == [("x",)]


def test_transaction_rolls_back_on_error(database: Database) -> None:
    _items(database)
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


def test_sqlite_concurrent_writers(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "c.db")
    _items(db)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                db.execute("INSERT INTO items (name) VALUES (?)", (f"{n}-{i}",))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert db.fetchone("SELECT COUNT(*) FROM items") == (80,)
    db.close()


def test_connect_urls(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path}/x.db")  # sqlite:////abs/path, as Settings builds it
    assert db.dialect == "sqlite"
    assert db.fetchone("SELECT 1") == (1,)
    db.close()
    assert (tmp_path / "x.db").exists()
    mem = connect("sqlite://:memory:")
    assert mem.fetchone("SELECT 1") == (1,)
    mem.close()
    with pytest.raises(ValueError):
        connect("mysql://nope")


def test_concurrent_migrations(database: Database) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _items(database)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert database.fetchone("SELECT COUNT(*) FROM schema_migrations") == (1,)
