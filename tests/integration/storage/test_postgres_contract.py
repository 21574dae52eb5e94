"""The ``Database`` contract (``tests/contracts/db.py``) on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
