"""A small real world for the portal: the real accounts service and ledger on SQLite, the real
app (``build_app``) in-process. Two customers with usage this month (Acme and Globex), an
operator customer whose user ``finance`` is an administrator, and one user per customer.

Usage is dated in the CURRENT month (so it is open, whatever day the tests run) and the days
used are its 1st and 2nd... capped to today, so nothing lies in the future."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.accounts.passwords import Passwords
from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import Meter, UsageRecord, derive_id
from feedserver.plans import Feed, Plan, Prices, Quotas
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase

PASSWORD = "portal password 1"
NOW = datetime.now(UTC)
MONTH = NOW.strftime("%Y-%m")
DAY1 = NOW.replace(day=1, hour=0, minute=30, second=0, microsecond=0)
DAY2 = NOW.replace(day=min(2, NOW.day), hour=0, minute=45, second=0, microsecond=0)
PLAN = Plan(name="portal-pro", feeds=["snapshots", "ondemand", "realtime"],
            quotas=Quotas(snapshot_downloads=10, bytes=50 * 10**9),
            prices=Prices(per_gb_egress=Decimal("0.09"), per_1000_lookups=Decimal("0.50"),
                          monthly_base_fee=Decimal(100)))


@dataclass
class World:
    settings: Settings
    db: SQLiteDatabase
    accounts: Accounts
    ids: dict[str, str]  # customer name -> id
    keys: dict[str, str]  # customer name -> full API key
    records: dict[str, list[UsageRecord]]  # customer name -> its usage records

    def app(self) -> Any:
        return build_app(self.settings, db=self.db, accounts=self.accounts,
                          blobs=FilesystemBlobStore(Path(self.settings.data_dir) / "blobs"),
                          registry=CollectorRegistry())


def usage(customer_id: str, tag: str) -> list[UsageRecord]:
    """Three responses' records: a snapshot download, a chunk, an on-demand lookup. Built as
    records (not through the HTTP seam) so the ids are fixed and the tests can name them."""

    def rec(n: int, feed: Feed, meter: Meter, quantity: int, ts: datetime) -> UsageRecord:
        return UsageRecord(usage_id=derive_id(tag, str(n), meter), ts=ts,
                           customer_id=customer_id, meter=meter, quantity=quantity, feed=feed,
                           api_key_id="key_test", project="enwiki", request_id=f"{tag}-{n}")

    return [
        rec(1, "snapshots", "requests", 1, DAY1), rec(1, "snapshots", "bytes", 2_500_000_000, DAY1),
        rec(2, "chunks", "requests", 1, DAY2), rec(2, "chunks", "bytes", 1_000_000_000, DAY2),
        rec(3, "ondemand", "requests", 1, DAY2), rec(3, "ondemand", "bytes", 40_000, DAY2),
        rec(3, "ondemand", "articles", 3, DAY2),
    ]


def build_world(tmp: Path) -> World:
    settings = Settings(data_dir=str(tmp), metering_enabled=False,
                        token_secret="portal-test-secret-0123456789abcdef")
    db = SQLiteDatabase(tmp / "feedserver.db")
    # Real argon2id at minimal cost: the tests check behaviour, not the work factor.
    accounts = Accounts(db, settings, passwords=Passwords(time_cost=1, memory_cost=8,
                                                          parallelism=1))
    accounts.create_plan(PLAN)
    ids, keys, records = {}, {}, {}
    for name, user in (("Acme", "alice"), ("Globex", "bob")):
        ids[name] = accounts.create_customer(name, PLAN.name).id
        keys[name] = accounts.create_api_key(name, "pipeline")[1]
        accounts.create_user(user, PASSWORD, name)
        records[name] = usage(ids[name], name)
    ids["Ops"] = accounts.create_customer("Ops", PLAN.name).id
    accounts.create_user("finance", PASSWORD, "Ops", is_admin=True)
    Ledger(db).append([r for rs in records.values() for r in rs])
    return World(settings, db, accounts, ids, keys, records)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build_world(tmp_path)
    yield w
    w.db.close()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient[Any], username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the CSRF token of the session's pages."""
    form = client.get("/usage/login")
    r = client.post("/usage/login", data={"csrf": csrf_of(form.text), "username": username,
                                          "password": password}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/usage/account/password").text)


@pytest.fixture
def client(world: World) -> Iterator[TestClient[Any]]:
    with TestClient(world.app()) as c:
        yield c
