"""Metering against the real accounts records: plans by customer for reports, and admission
reading a real ``Principal``'s plan."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from feedserver.accounts.admin import AccountAdmin
from feedserver.accounts.models import Principal
from feedserver.errors import NotFound, QuotaExceeded
from feedserver.metering.admission import Admitter
from feedserver.metering.customers import customer_directory
from feedserver.metering.ledger import Ledger
from feedserver.metering.quotas import QuotaCounters
from feedserver.metering.ratelimit import LocalRateLimiter
from feedserver.metering.records import response_records
from feedserver.metering.reports import build_report
from feedserver.plans import Plan, Prices, Quotas, RateLimit
from feedserver.storage.db import Database

PLAN = Plan(name="metered-pro", feeds=["snapshots", "ondemand"],
            quotas=Quotas(ondemand_lookups=2), rate_limit=RateLimit(requests_per_second=50,
                                                                     burst=10),
            prices=Prices(per_1000_lookups=Decimal("2.5"), monthly_base_fee=Decimal(99),
                          currency="EUR"))


def test_directory_without_accounts_tables_passes_ids_through(db: Database) -> None:
    directory = customer_directory(db)
    assert directory.resolve("whoever") == "whoever"
    assert directory.terms("whoever").name == "unlimited"


def test_reports_price_with_the_customers_plan(db: Database) -> None:
    admin = AccountAdmin(db)
    admin.create_plan(PLAN)
    acme = admin.create_customer("Acme", plan="metered-pro")
    directory = customer_directory(db)
    assert directory.resolve("Acme") == acme.id
    with pytest.raises(NotFound):
        directory.resolve("Nobody")
    principal = Principal(customer_id=acme.id, customer_name="Acme", user="alice",
                          api_key_id=None, is_admin=False, plan=PLAN)
    Ledger(db).append(response_records(principal, feed="ondemand", project="enwiki",
                                       response_id="q1", articles=1,
                                       ts=datetime(2026, 11, 2, tzinfo=UTC)))
    report = build_report(db, "2026-11", customer_id=directory.resolve("Acme"),
                          terms_of=directory.terms)
    (usage,) = report.customers
    assert (usage.plan, usage.currency, usage.total) == ("metered-pro", "EUR", Decimal("99.00"))
    assert usage.invoice[-1].amount == Decimal("0.00")  # 1 lookup x 2.5/1000 rounds to 0.00


async def test_admission_reads_the_principals_plan(db: Database) -> None:
    Ledger(db)
    principal = Principal(customer_id="cus_1", customer_name="Acme", user=None,
                          api_key_id="key_1", is_admin=False, plan=PLAN)
    admitter = Admitter(QuotaCounters(db), LocalRateLimiter())
    first = await admitter.admit(principal, "ondemand", "enwiki")
    assert first.headers["RateLimit-Policy"].startswith('"default";q=10;w=1')
    await admitter.admit(principal, "ondemand", "enwiki")
    with pytest.raises(QuotaExceeded):
        await admitter.admit(principal, "ondemand", "enwiki")
