"""Shared helpers for the metering unit tests (SQLite; the PostgreSQL runs are integration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from feedserver.metering.journal import encode_lines
from feedserver.metering.records import Usage, UsageRecord, derive_id, response_records
from feedserver.metering.response_usage import line, nanos
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


def old_line(record: UsageRecord) -> bytes:
    """A journal line as servers wrote them before one line per response: one usage record,
    a JSON object (their segments must still be recovered)."""
    return encode_lines([record])


def _usage(n: int, bytes_sent: int, resource: str | None) -> Usage:
    return {"feed": "chunks", "project": "enwiki", "response_id": f"resp-{n}",
            "request_id": f"req-{n}", "bytes_sent": bytes_sent, "resource": resource,
            "download": resource is not None}


def response_line(n: int, *, bytes_sent: int = 10, ts: datetime | None = None,
                  resource: str | None = None) -> bytes:
    """The journal line of fake response ``n`` (``response_id`` ``resp-n``; a download of
    ``resource`` when given) of ``FakePrincipal``, as ``record()`` writes it."""
    when = ts or datetime(2026, 11, 5, 12, tzinfo=UTC)
    return line(nanos(when), FakePrincipal(), _usage(n, bytes_sent, resource))


def response_of(n: int, *, bytes_sent: int = 10, ts: datetime | None = None,
                resource: str | None = None) -> list[UsageRecord]:
    """The usage records of ``response_line`` with the same arguments (``response_records``)."""
    return response_records(FakePrincipal(), ts=ts or datetime(2026, 11, 5, 12, tzinfo=UTC),
                            **_usage(n, bytes_sent, resource))
