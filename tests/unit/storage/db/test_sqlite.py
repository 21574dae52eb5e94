"""The ``Database`` contract (``tests/contracts/db.py``) on SQLite, and what only SQLite does:
several writer threads on one file, and the URLs ``connect`` accepts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedserver.storage.db import Database, SQLiteDatabase, connect
from tests.contracts.db import *  # noqa: F403 - the contract's tests run here
from tests.contracts.db import items_table


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = SQLiteDatabase(tmp_path / "test.db")
    try:
        yield db
    finally:
        db.close()


def test_sqlite_concurrent_writers(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "c.db")
    items_table(db)
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
