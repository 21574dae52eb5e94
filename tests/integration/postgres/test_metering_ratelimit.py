"""``tests/unit/metering/test_ratelimit.py`` on PostgreSQL, and what only PostgreSQL has."""

import pytest

from feedserver.metering.ledger import migrate
from feedserver.storage.db import Database
from tests.unit.metering.test_ratelimit import *  # noqa: F403 - its tests run here

pytestmark = pytest.mark.integration


def test_the_buckets_table_is_unlogged(postgres_database: Database) -> None:
    # A lease step's commit then waits for no WAL flush; a crash empties the buckets, which
    # start full (test_a_database_bucket_whose_row_is_gone_starts_full).
    migrate(postgres_database)
    row = postgres_database.fetchone(
        "SELECT relpersistence FROM pg_class WHERE relname = 'rate_limit_state'")
    assert row is not None and row[0] == "u"
