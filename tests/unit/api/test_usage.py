from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from litestar.testing import TestClient

from feedserver.metering.customers import StaticDirectory
from feedserver.metering.records import response_records
from feedserver.metering.service import Metering
from feedserver.plans import Plan, Prices
from feedserver.storage.db import Database
from tests.unit.api.usage_app import principal, usage_app
from tests.unit.metering.conftest import FakePrincipal


def test_usage_json_is_scoped_to_the_caller(database: Database, tmp_path: Path) -> None:
    plan = Plan(name="default", prices=Prices(monthly_base_fee=Decimal(5)))
    metering = Metering(database, journal_dir=str(tmp_path / "j"), directory=StaticDirectory(
        {"acme": ("Acme Corp", plan), "globex": ("Globex", plan)}))
    ts = datetime(2026, 11, 3, tzinfo=UTC)
    for who in ("acme", "globex"):
        metering.ledger.append(response_records(
            FakePrincipal(customer_id=who), feed="chunks", project="enwiki", response_id=who,
            bytes_sent=100, ts=ts))
    app = usage_app(metering, {"admin": principal("operator", admin=True),
                               "acme": principal("acme")})
    with TestClient(app) as client:
        mine = client.get("/v1/usage?month=2026-11", headers={"Authorization": "Bearer acme"})
        assert mine.status_code == 200
        assert [c["customer_id"] for c in mine.json()["customers"]] == ["acme"]
        other = client.get("/v1/usage?month=2026-11&customer=globex",
                           headers={"Authorization": "Bearer acme"})
        assert other.status_code == 403
        everyone = client.get("/v1/usage?month=2026-11", headers={"Authorization": "Bearer admin"})
        assert [c["customer_id"] for c in everyone.json()["customers"]] == ["acme", "globex"]
        assert everyone.json()["customers"][0]["total"] == "5.00"
        by_name = client.get("/v1/usage?month=2026-11&customer=Acme Corp",
                             headers={"Authorization": "Bearer admin"})
        assert [c["customer_id"] for c in by_name.json()["customers"]] == ["acme"]
        assert client.get("/v1/usage?month=2026-11").status_code == 401
        bad = client.get("/v1/usage?month=11-2026", headers={"Authorization": "Bearer admin"})
        assert bad.status_code == 422 and "month" in bad.json()["detail"]
