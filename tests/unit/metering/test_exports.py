"""The shapes billing systems ingest: CloudEvents (OpenMeter) and Stripe meter events."""

from __future__ import annotations

import csv
import io

import msgspec
import pytest

from feedserver.errors import InvalidParameter
from feedserver.metering.entries import ALL_COLUMNS, LedgerRow
from feedserver.metering.exports import cloud_event, ndjson, stripe_events
from feedserver.metering.rows import rows_csv

USAGE = LedgerRow(seq=1, usage_id="u-1", ts="2026-11-05T12:00:00.000000Z", customer_id="cus_a",
                  feed="chunks", project="enwiki", meter="bytes", quantity=1234,
                  api_key_id="key_1")
VOID = msgspec.structs.replace(USAGE, seq=2, usage_id="v-1", quantity=-1234, kind="void",
                               corrects="u-1", reason="test traffic", actor="finance",
                               original_ts=USAGE.ts)
CREDIT = LedgerRow(seq=3, usage_id="c-1", ts=USAGE.ts, customer_id="cus_a", feed="",
                   meter="credit", quantity=500, resource="USD", kind="credit", reason="sorry")


def test_cloud_events_carry_ids_subjects_and_signed_values() -> None:
    lines = ndjson([cloud_event(r, "https://feeds.example") for r in (USAGE, VOID, CREDIT)])
    usage, void, credit = (msgspec.json.decode(line) for line in lines.splitlines())
    assert usage == {
        "specversion": "1.0", "id": "u-1", "source": "https://feeds.example",
        "type": "feedserver.bytes", "subject": "cus_a", "time": "2026-11-05T12:00:00.000000Z",
        "datacontenttype": "application/json",
        "data": {"value": 1234, "meter": "bytes", "feed": "chunks", "project": "enwiki",
                 "api_key_id": "key_1"},
    }
    assert void["data"]["value"] == -1234 and void["data"]["corrects"] == "u-1"
    assert void["data"]["kind"] == "void" and void["data"]["reason"] == "test traffic"
    assert credit["type"] == "feedserver.credit" and credit["data"]["currency"] == "USD"


def test_stripe_meter_events() -> None:
    events, credits = stripe_events([USAGE, VOID, CREDIT], {"cus_a": "cus_Stripe1"})
    assert credits == 1
    assert msgspec.to_builtins(events[0]) == {
        "event_name": "feedserver_bytes",
        "payload": {"stripe_customer_id": "cus_Stripe1", "value": "1234"},
        "identifier": "u-1", "timestamp": 1793880000,  # 2026-11-05T12:00Z
    }
    assert events[1].payload.value == "-1234"
    with pytest.raises(InvalidParameter, match=r"Acme \(cus_a\)"):
        stripe_events([USAGE], {}, {"cus_a": "Acme"})


def test_rows_csv_has_every_column() -> None:
    table = list(csv.reader(io.StringIO(rows_csv([USAGE, VOID]))))
    assert table[0] == list(ALL_COLUMNS)
    assert table[2][ALL_COLUMNS.index("corrects")] == "u-1"
    assert table[2][ALL_COLUMNS.index("quantity")] == "-1234"
