"""Shared helpers for the metering unit tests (SQLite; the PostgreSQL runs are integration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from feedserver.metering.records import UsageRecord, derive_id
from feedserver.plans import UNLIMITED, Plan
from feedserver.storage.db import Database


@dataclass
class FakePrincipal:
    """Stands in for accounts' Principal: metering reads it structurally."""

    customer_id: str = "acme"
    api_key_id: str | None = "key-1"
    user: str | None = "alice"
    plan: Plan = UNLIMITED


@pytest.fixture
def db(database: Database) -> Database:
    """Every ledger/quota test runs on SQLite and (marked integration) on PostgreSQL."""
    return database


def rec(n: int, *, customer: str = "acme", meter: str = "bytes", quantity: int = 10,
        ts: datetime | None = None) -> UsageRecord:
    return UsageRecord(
        usage_id=derive_id("req", str(n), meter), ts=ts or datetime(2026, 11, 5, 12, tzinfo=UTC),
        customer_id=customer, meter=meter, quantity=quantity, feed="chunks",  # type: ignore[arg-type]
        request_id=f"req-{n}",
    )
