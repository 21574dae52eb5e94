from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from feedserver.metering.ledger import Ledger
from feedserver.metering.records import response_records
from feedserver.metering.reports import build_report, price_lines, to_csv, to_json
from feedserver.plans import Plan, Prices, Quotas
from feedserver.storage.db import Database
from tests.unit.metering.conftest import FakePrincipal

PLAN = Plan(
    name="pro",
    quotas=Quotas(ondemand_lookups=50_000),
    prices=Prices(per_gb_egress=Decimal("0.09"), per_1000_lookups=Decimal("0.50"),
                  per_stream_hour=Decimal("0.10"), monthly_base_fee=Decimal("100"),
                  currency="EUR"),
)


def test_price_lines_round_half_up_per_line() -> None:
    lines = price_lines(PLAN, {"bytes": 1_500_000_000, "stream_seconds": 5400}, 1001)
    assert [(ln.item, ln.amount) for ln in lines] == [
        ("base fee", Decimal("100.00")),
        ("egress", Decimal("0.14")),  # 1.5 GB x 0.09 = 0.135 -> 0.14
        ("on-demand lookups", Decimal("0.50")),  # 1.001 x 0.50 = 0.5005 -> 0.50
        ("realtime stream", Decimal("0.15")),
    ]
    yen = Plan(name="default", prices=Prices(per_gb_egress=Decimal("13.5"), currency="JPY"))
    assert price_lines(yen, {"bytes": 10**9}, 0)[0].amount == Decimal(14)


def test_report_totals_per_customer_meter_and_day(db: Database) -> None:
    ledger = Ledger(db)
    acme, other = FakePrincipal(), FakePrincipal(customer_id="other")
    nov30 = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    ledger.append([
        *response_records(acme, feed="ondemand", project="enwiki", response_id="1",
                          bytes_sent=10**9, articles=1, ts=datetime(2026, 11, 1, tzinfo=UTC)),
        *response_records(acme, feed="chunks", project="enwiki", response_id="2",
                          bytes_sent=5 * 10**8, ts=nov30),
        *response_records(other, feed="realtime", project="enwiki", response_id="3",
                          stream_seconds=3600, ts=nov30),
        *response_records(acme, feed="chunks", project="enwiki", response_id="4",
                          bytes_sent=7, ts=datetime(2026, 12, 1, tzinfo=UTC)),  # next month
    ])
    terms = {"acme": PLAN}
    report = build_report(db, "2026-11", terms_of=lambda c: terms.get(c, Plan(name="default")))
    by_id = {c.customer_id: c for c in report.customers}
    acme_usage = by_id["acme"]
    assert acme_usage.totals == {"bytes": 1_500_000_000, "articles": 1, "requests": 2}
    assert acme_usage.days["2026-11-30"] == {"bytes": 5 * 10**8, "requests": 1}
    assert acme_usage.total == Decimal("100.00") + Decimal("0.14") + Decimal("0.00")
    assert by_id["other"].totals == {"requests": 1, "stream_seconds": 3600}
    assert by_id["other"].invoice == []
    only = build_report(db, "2026-11", customer_id="other")
    assert [c.customer_id for c in only.customers] == ["other"]
    decoded = msgspec.json.decode(to_json(report))
    assert decoded["customers"][0]["total"] == "100.14"
    csv_text = to_csv(report)
    assert "invoice,2026-11,acme,acme,egress,GB,1.5,0.09,0.14,EUR" in csv_text
    assert "usage,2026-11,acme,acme,2026-11-01,bytes,1000000000" in csv_text
