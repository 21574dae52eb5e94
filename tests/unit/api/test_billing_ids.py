"""Issue 11, item 1: the client's ``X-Request-Id`` must never be a billing key.

Usage ids used to be ``uuid5(X-Request-Id, meter)``, so a client that sent one id on every
request was billed once, a customer reusing another customer's id was billed nothing, and the
bytes quota (fed by the ledger) never filled. These tests replay those attacks through the real
app, the real metering (journal, writer, hash-chained ledger) and the real accounts service.
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
from feedserver.metering.service import Metering, open_metering
from feedserver.plans import Plan, Quotas
from feedserver.storage.eventlog import EmbeddedEventLog
from tests.unit.api.conftest import World

CHUNK = "/v2/snapshots/enwiki_namespace_0/chunks/0/download"
FIXED_ID = "same-request-id-0001"


def _ledger(metering: Metering, customer: str) -> dict[str, int]:
    rows = metering.db.fetchall(
        "SELECT meter, SUM(quantity), COUNT(*) FROM usage_ledger WHERE customer_id = ? "
        "GROUP BY meter", (customer,))
    out = {str(m): int(q) for m, q, _ in rows}
    out.update({f"rows:{m}": int(n) for m, _, n in rows})
    return out


def _customer_id(world: World, key: str) -> str:
    return world.accounts.authenticate_api_key(key).customer_id


def _flush(client: TestClient[Any], metering: Metering) -> None:
    # The writer task runs on the app's event loop: wait for it there.
    client.blocking_portal.call(metering.flush)


@pytest.fixture
def metered(world: World, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Metering]]:
    settings = msgspec.structs.replace(world.settings, metering_enabled=True,
                                       data_dir=str(tmp_path))
    metering = open_metering(settings, world.db, EmbeddedEventLog(world.db))
    # Admission reads committed bytes through a short cache; read them every time here so
    # the quota test sees each download's bytes as soon as the ledger has them.
    metering.admitter.bytes_cache_seconds = 0.0
    app = build_app(settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, metering=metering, registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client, metering


def test_one_request_id_on_every_download_is_billed_per_download(
        world: World, metered: tuple[TestClient[Any], Metering]) -> None:
    client, metering = metered
    received = 0
    for _ in range(27):
        r = client.get(CHUNK, headers=world.headers(world.key_a, **{"X-Request-Id": FIXED_ID}))
        assert r.status_code == 200
        # The client's id is still echoed: it is the correlation field.
        assert r.headers["x-request-id"] == FIXED_ID
        received += len(r.content)
    _flush(client, metering)
    billed = _ledger(metering, _customer_id(world, world.key_a))
    assert billed["requests"] == 27
    assert billed["bytes"] == received
    # ...and the id is stored with each record, for support and finance.
    ids = metering.db.fetchall(
        "SELECT DISTINCT request_id FROM usage_ledger WHERE meter = 'requests' "
        "AND customer_id = ?", (_customer_id(world, world.key_a),))
    assert ids == [(FIXED_ID,)]


def test_another_customers_request_id_does_not_make_a_download_free(
        world: World, metered: tuple[TestClient[Any], Metering]) -> None:
    client, metering = metered
    first = client.get(CHUNK, headers=world.headers(world.key_a, **{"X-Request-Id": FIXED_ID}))
    assert first.status_code == 200
    other = client.get("/v2/snapshots/dewiki_namespace_0/chunks/0/download",
                       headers=world.headers(world.key_b, **{"X-Request-Id": FIXED_ID}))
    assert other.status_code == 200
    _flush(client, metering)
    billed = _ledger(metering, _customer_id(world, world.key_b))
    assert billed["bytes"] == len(other.content) > 0
    assert billed["requests"] == 1


def test_bytes_quota_holds_against_a_repeated_request_id(
        world: World, metered: tuple[TestClient[Any], Metering]) -> None:
    client, metering = metered
    size = len(client.get(CHUNK, headers=world.headers(world.key_a)).content)
    # Room for three downloads of the chunk, as the 3 MB quota against 2.1 MB files.
    world.accounts.create_plan(Plan(name="bytes-3x", feeds=["snapshots"], projects=["enwiki"],
                                    quotas=Quotas(bytes=3 * size)))
    world.accounts.create_customer("zeta", "bytes-3x")
    key = world.accounts.create_api_key("zeta")[1]
    statuses = []
    for _ in range(6):
        r = client.get(CHUNK, headers=world.headers(key, **{"X-Request-Id": FIXED_ID}))
        statuses.append(r.status_code)
        _flush(client, metering)
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert _ledger(metering, _customer_id(world, key))["bytes"] == 3 * size


def test_concurrent_progress_of_two_responses_with_one_request_id_stay_apart(
        world: World, metered: tuple[TestClient[Any], Metering]) -> None:
    """Checkpoints are keyed by the server's response id: two responses sharing a client id
    must not share (or release) each other's journal entries."""
    client, metering = metered
    recorder = metering.recorder
    assert recorder is not None
    principal = world.accounts.authenticate_api_key(world.key_a)
    recorder.progress(principal, feed="chunks", project="enwiki", response_id="srv-1",
                      request_id=FIXED_ID, bytes_sent=10)
    recorder.progress(principal, feed="chunks", project="enwiki", response_id="srv-2",
                      request_id=FIXED_ID, bytes_sent=20)
    recorder.record(principal, feed="chunks", project="enwiki", response_id="srv-1",
                    request_id=FIXED_ID, bytes_sent=15)
    _flush(client, metering)
    # srv-2 is still streaming: its checkpoint (one journal line) stays, not released.
    assert recorder.journal.pending() == 1
