"""Issue 11, item 8: the metering edge cases follow ONE documented rule each.

* a 304 (``If-None-Match``) is rate limited and counted as a request, like HEAD (docs/api.md);
* an on-demand lookup that answers 404 counts against the lookup quota AND is billed as a
  lookup request: every admitted lookup counts once in both (docs/metering.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.metering.months import month_of
from feedserver.metering.records import utcnow
from feedserver.metering.service import Metering, open_metering
from feedserver.plans import Plan, Quotas, RateLimit
from feedserver.storage.eventlog import EmbeddedEventLog
from tests.unit.api.conftest import World

CHUNK = "/v2/snapshots/enwiki_namespace_0/chunks/0/download"


@pytest.fixture
def metered(world: World, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Metering]]:
    settings = msgspec.structs.replace(world.settings, metering_enabled=True,
                                       data_dir=str(tmp_path))
    metering = open_metering(settings, world.db, EmbeddedEventLog(world.db))
    app = build_app(settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, metering=metering, registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client, metering


def _key(world: World, name: str, plan: Plan) -> tuple[str, str]:
    world.accounts.create_plan(plan)
    world.accounts.create_customer(name, plan.name)
    key = world.accounts.create_api_key(name)[1]
    return key, world.accounts.authenticate_api_key(key).customer_id


def _billed(client: TestClient[Any], metering: Metering, customer: str, feed: str) -> int:
    client.blocking_portal.call(metering.flush)
    row = metering.db.fetchone(
        "SELECT COALESCE(SUM(quantity), 0) FROM usage_ledger WHERE customer_id = ? "
        "AND feed = ? AND meter = 'requests'", (customer, feed))
    assert row is not None
    return int(row[0])


def test_304_is_rate_limited_and_counted(
        world: World, metered: tuple[TestClient[Any], Metering]) -> None:
    client, metering = metered
    key, customer = _key(world, "eta", Plan(
        name="eta-2", feeds=["snapshots"], projects=["enwiki"],
        rate_limit=RateLimit(requests_per_second=0.001, burst=3)))
    first = client.get(CHUNK, headers=world.headers(key))
    assert first.status_code == 200
    etag = first.headers["etag"]
    again = client.get(CHUNK, headers=world.headers(key, **{"If-None-Match": etag}))
    assert again.status_code == 304
    assert "ratelimit" in again.headers  # admitted, so it carries the policy
    assert client.get(CHUNK, headers=world.headers(key, **{"If-None-Match": etag})
                      ).status_code == 304
    # The burst of 3 is spent (one 200, two 304s): the next 304 is refused like any request.
    limited = client.get(CHUNK, headers=world.headers(key, **{"If-None-Match": etag}))
    assert limited.status_code == 429
    assert limited.json()["type"].endswith("/rate-limited")
    assert _billed(client, metering, customer, "chunks") == 3
    # ...and a 304 is never a download: the download quota was consumed once.
    used = metering.counters.used(customer, month_of(utcnow()), "chunk_downloads")
    assert used == 1


def test_ondemand_404_counts_in_quota_and_billing_alike(
        world: World, metered: tuple[TestClient[Any], Metering]) -> None:
    client, metering = metered
    key, customer = _key(world, "theta", Plan(
        name="theta-lookups", feeds=["ondemand"], projects=["enwiki"],
        quotas=Quotas(ondemand_lookups=4)))
    statuses = [client.get(f"/v2/articles/{name}", headers=world.headers(key)).status_code
                for name in ("Page_1", "No such page", "Page_2", "Missing too", "Page_3")]
    assert statuses == [200, 404, 200, 404, 429]
    used = metering.counters.used(customer, month_of(utcnow()), "ondemand_lookups")
    # One rule for both: the four admitted lookups, found or not.
    assert used == 4
    assert _billed(client, metering, customer, "ondemand") == 4
