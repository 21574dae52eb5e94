"""The /usage finance page in real headless Chromium (Debian's, never a downloaded one)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from feedserver.metering.customers import StaticDirectory
from feedserver.metering.quotas import QuotaCounters
from feedserver.metering.records import response_records
from feedserver.metering.service import Metering
from feedserver.plans import Plan, Prices, Quotas
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.asgi import serve_in_thread
from tests.unit.api.usage_app import principal, usage_app
from tests.unit.metering.conftest import FakePrincipal

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PLAN = Plan(name="default", quotas=Quotas(chunk_downloads=4),
                 prices=Prices(per_gb_egress=Decimal("0.09"), monthly_base_fee=Decimal(20)))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    metering = Metering(db, journal_dir=str(tmp_path / "j"), directory=StaticDirectory(
        {"acme": ("Acme", PLAN), "globex": ("Globex", PLAN)}))
    nov = [datetime(2026, 11, d, 12, tzinfo=UTC) for d in (2, 9, 9, 30)]
    for i, (who, ts) in enumerate(zip(["acme", "acme", "globex", "globex"], nov, strict=True)):
        metering.ledger.append(response_records(
            FakePrincipal(customer_id=who), feed="chunks", project="enwiki",
            response_id=f"r{i}", bytes_sent=(i + 1) * 10**9, ts=ts))
    QuotaCounters(db).consume("acme", "2026-11", "chunk_downloads", 4, nov[0], amount=3)
    app = usage_app(metering, {"admin-token": principal("operator", admin=True)})
    with serve_in_thread(app) as url:
        yield url
    db.close()


def test_finance_page_draws_usage_quotas_and_invoices(server: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium missing: run scripts/system-deps.sh")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server + "/usage")
            page.fill("#month", "2026-11")
            page.fill("#token", "wrong")
            page.click("#load")
            page.wait_for_selector("#status.error")
            assert "Could not load usage" in page.inner_text("#status")

            page.fill("#token", "admin-token")
            page.click("#load")
            expect(page.locator("#status")).to_have_text(re.compile(r"^2 customer"))
            bars = page.eval_on_selector_all(
                "#daily rect.bar", "rs => rs.map(r => Number(r.dataset.bytes))")
            assert len(bars) == 30  # every day of November
            assert (bars[1], bars[8], bars[29]) == (10**9, 5 * 10**9, 4 * 10**9)
            top = page.eval_on_selector_all(
                "#top rect.bar", "rs => rs.map(r => r.dataset.customer)")
            assert top == ["globex", "acme"]  # globex: 7 GB, higher invoice
            quota_rows = page.inner_text("#quotas tbody")
            assert "acme" in quota_rows and "chunk_downloads" in quota_rows and "3" in quota_rows
            invoice = page.inner_text("#invoice tbody")
            assert "20.27 USD" in invoice  # acme: 20 + 3 GB x 0.09
            assert "20.63 USD" in invoice  # globex: 20 + 7 GB x 0.09
            assert errors == []
        finally:
            browser.close()
