"""The ledger seals rows from the records' bodies (``sealing``), not from ``LedgerRow``s: these
properties pin that the rows, hashes and counters are exactly what the row model defines, so
rows written before and after the change form one chain that ``verify`` accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.metering.entries import LedgerRow, canonical
from feedserver.metering.ledger import Ledger, ts_text
from feedserver.metering.periods import Periods
from feedserver.metering.records import (
    RESPONSE_ID_VERSION,
    UsageRecord,
    derive_id,
    merge,
    new_response_id,
    response_records,
)
from feedserver.metering.sealing import row_hash
from feedserver.storage.db import Database, SQLiteDatabase
from tests.unit.metering.conftest import FakePrincipal
from tests.unit.metering.test_corrections import Clock

NOW = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)  # October closes at Nov 2, 00:00 (24 h grace)
METERS = ("bytes", "requests", "articles", "downloads")


def _record(n: int, meter: str) -> UsageRecord:
    # Everything but the id follows from ``n``, so a duplicate id is a replay of the same
    # record (which batch keeps a *different* record of one id is not what is tested here).
    return UsageRecord(
        usage_id=derive_id("prop", str(n), meter),
        # Some records fall in the closed October: they become ``late`` rows.
        ts=NOW - timedelta(minutes=(n * 997) % (4 * 24 * 60)),
        customer_id=("acme", "globex")[n % 2], meter=meter,  # type: ignore[arg-type]
        quantity=(n * 7919) % 10**12 + 1, feed="chunks", request_id=f"r{n}",
        resource="res@1" if n % 3 else "",
        user="ü\x00\"" if n % 5 == 0 else "alice")  # text JSON must escape, hashed as is


records_st = st.lists(st.builds(_record, st.integers(0, 400), st.sampled_from(METERS)),
                      max_size=60)


def reference_rows(records: list[UsageRecord], periods: Periods) -> list[LedgerRow]:
    """The rows as the row model defines them (``LedgerRow``, ``canonical``): one per usage
    id (largest quantity), in time order, late when the month closed, chained from genesis."""
    rows, prev = [], "0" * 64
    booked = ts_text(NOW)
    for seq, r in enumerate(sorted(merge(records), key=lambda r: (r.ts, r.usage_id)), 1):
        ts = ts_text(r.ts)
        row = LedgerRow(usage_id=r.usage_id, ts=ts, customer_id=r.customer_id, feed=r.feed,
                        meter=r.meter, quantity=r.quantity, seq=seq, api_key_id=r.api_key_id,
                        user_name=r.user, project=r.project, request_id=r.request_id,
                        resource=r.resource, download_id=r.download_id)
        if not periods.is_open(ts[:7], NOW):
            row = msgspec.structs.replace(row, ts=booked, kind="late", original_ts=ts,
                                          actor="ledger", reason=f"arrived after {ts[:7]} closed")
        digest = row_hash(prev, canonical(row))
        rows.append(msgspec.structs.replace(row, prev_hash=prev, row_hash=digest))
        prev = digest
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records_st, st.integers(1, 7))
def test_rows_are_the_row_model_sealed_in_batches(
        tmp_path_factory: pytest.TempPathFactory, records: list[UsageRecord], batches: int,
) -> None:
    db = SQLiteDatabase(tmp_path_factory.mktemp("ledger") / "ledger.db")
    try:
        periods = Periods.hours(24, clock=Clock(NOW))
        ledger = Ledger(db, periods=periods)
        # Appended in ``batches`` slices, then all again (a journal replay): duplicates are
        # skipped, whatever batch they are in.
        size = max(1, len(records) // batches)
        for i in range(0, len(records), size):
            ledger.append(records[i : i + size])
        assert ledger.append(records) == 0
        stored = list(ledger.rows())
        expected = reference_rows(records, periods)
        assert len(stored) == len(expected)
        # One batch at a time changes the seq order, never a row's content or hash rule.
        by_id = {r.usage_id: r for r in expected}
        for row in stored:
            want = by_id[row.usage_id]
            assert msgspec.structs.replace(row, seq=0, prev_hash="", row_hash="") == \
                msgspec.structs.replace(want, seq=0, prev_hash="", row_hash="")
            assert row.row_hash == row_hash(row.prev_hash, canonical(row))
        assert ledger.verify().ok
        used = dict(db.fetchall("SELECT customer_id || month, used FROM quota_usage"))
        want_used: dict[str, int] = {}
        for r in expected:
            if r.meter == "bytes":
                key = r.customer_id + r.ts[:7]
                want_used[key] = want_used.get(key, 0) + r.quantity
        assert used == want_used
    finally:
        db.close()


def test_one_batch_matches_the_row_model_row_for_row(db: Database) -> None:
    # In one batch even seq and the chain are the reference's, hash for hash.
    records = [UsageRecord(usage_id=derive_id("one", str(n), m), ts=NOW - timedelta(days=n),
                           customer_id="acme", meter=m, quantity=n + 1, feed="chunks")
               for n in range(4) for m in ("bytes", "requests")]
    periods = Periods.hours(24, clock=Clock(NOW))
    ledger = Ledger(db, periods=periods)
    assert ledger.append(records) == len(records)
    assert list(ledger.rows()) == reference_rows(records, periods)
    assert {r.kind for r in ledger.rows()} == {"usage", "late"}


def test_a_replayed_response_is_skipped_after_the_optimistic_insert_fails(db: Database) -> None:
    # Response ids (time-ordered) are not looked up before the insert: a replayed one makes
    # the unique index refuse the batch, which is then sealed again without it, and nothing
    # of the refused attempt (rows, bytes counter, head) is left behind.
    principal = FakePrincipal()
    first = response_records(principal, feed="chunks", project="p", response_id=new_response_id(),
                             bytes_sent=100, resource="chunk@1", download=True)
    second = response_records(principal, feed="chunks", project="p",
                              response_id=new_response_id(), bytes_sent=7, resource="chunk@1",
                              download=True)
    assert {r.usage_id[14] for r in first} == {RESPONSE_ID_VERSION, "5"}  # and a download id
    ledger = Ledger(db)
    assert ledger.append(first) == 3
    assert ledger.append([*first, *second]) == 2  # second's requests and bytes
    assert ledger.count() == 5 and ledger.head().rows == 5
    assert ledger.verify().ok
    assert db.fetchone("SELECT used FROM quota_usage WHERE meter = 'bytes'") == (107,)


@given(st.datetimes(timezones=st.just(UTC)) | st.datetimes(timezones=st.timezones()))
def test_ledger_time_text_is_the_fixed_width_utc_isoformat(when: datetime) -> None:
    # Ledger times are compared and ranged as text, so the fast UTC path (msgspec's RFC 3339
    # text) must give exactly the text the definition gives, microsecond 0 and year < 1000
    # included, for any time zone.
    utc = when.astimezone(UTC) if when.utcoffset() is not None else when
    expected = utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    assert ts_text(when) == expected
    assert len(ts_text(when)) == len("2026-01-01T00:00:00.000000Z")
