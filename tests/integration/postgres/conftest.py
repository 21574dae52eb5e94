"""The unit tests of everything that stores rows, re-run on a real PostgreSQL server.

Each module here imports one unit test module's tests; this conftest gives them PostgreSQL
as ``database`` and the fixtures their own folders' conftests provide.
"""

from __future__ import annotations

import pytest

from feedserver.storage.db import Database
from tests.unit.accounts.conftest import accounts, cheap_passwords, clock
from tests.unit.metering.conftest import db

__all__ = ["accounts", "cheap_passwords", "clock", "db"]


@pytest.fixture
def database(postgres_database: Database) -> Database:
    return postgres_database

