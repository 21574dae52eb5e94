from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from feedserver.metering.records import (
    UsageRecord,
    derive_id,
    download_id,
    merge,
    response_records,
)
from tests.unit.metering.conftest import FakePrincipal, rec


def test_response_records_only_non_zero_meters_and_stable_ids() -> None:
    p = FakePrincipal()
    ts = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    a = response_records(p, feed="chunks", project="enwiki", response_id="r1",
                         bytes_sent=100, resource="enwiki_namespace_0@3", download=True, ts=ts)
    b = response_records(p, feed="chunks", project="enwiki", response_id="r1",
                         bytes_sent=100, resource="enwiki_namespace_0@3", download=True, ts=ts)
    assert [r.meter for r in a] == ["requests", "bytes", "downloads"]
    assert [r.usage_id for r in a] == [r.usage_id for r in b]
    assert a[0].user == "alice" and a[0].api_key_id == "key-1"


def test_parallel_ranges_of_one_version_share_one_download_id() -> None:
    p = FakePrincipal()
    day = datetime(2026, 11, 5, 1, tzinfo=UTC)
    later = datetime(2026, 11, 5, 23, tzinfo=UTC)
    ranges = [
        response_records(p, feed="snapshots", project="enwiki", response_id=f"r{i}",
                         bytes_sent=10, resource="enwiki_namespace_0@3", download=True, ts=t)
        for i, t in enumerate([day, later])
    ]
    downloads = {r.usage_id for recs in ranges for r in recs if r.meter == "downloads"}
    assert downloads == {download_id("acme", "enwiki_namespace_0@3", day)}
    next_day = datetime(2026, 11, 6, tzinfo=UTC)
    assert download_id("acme", "enwiki_namespace_0@3", next_day) not in downloads
    assert download_id("other", "enwiki_namespace_0@3", day) not in downloads


def test_derive_id_is_uuid5() -> None:
    import uuid

    from feedserver.metering import records

    for parts in [("a",), ("req-1", "bytes"), ("download", "acme", "x@1", "2026-11-05")]:
        assert derive_id(*parts) == str(uuid.uuid5(records._NAMESPACE, "\x1f".join(parts)))


def test_merge_keeps_the_largest_checkpoint() -> None:
    assert [r.quantity for r in merge([rec(1, quantity=5), rec(2), rec(1, quantity=9)])] == [9, 10]


def test_record_roundtrips_through_json() -> None:
    r = rec(1)
    assert msgspec.json.decode(msgspec.json.encode(r), type=UsageRecord) == r


def test_usage_ids_ignore_the_client_request_id_and_are_scoped_by_customer_and_key() -> None:
    ts = datetime(2026, 11, 5, tzinfo=UTC)

    def ids(principal: FakePrincipal, response: str, client: str) -> set[str]:
        return {r.usage_id for r in response_records(
            principal, feed="chunks", project="enwiki", response_id=response, request_id=client,
            bytes_sent=5, ts=ts)}

    acme = FakePrincipal()
    # The client's X-Request-Id changes nothing; the server's response id does.
    assert ids(acme, "s1", "client-a") == ids(acme, "s1", "client-b")
    assert ids(acme, "s1", "same").isdisjoint(ids(acme, "s2", "same"))
    # Even a (never expected) collision of server ids cannot merge two customers or keys.
    assert ids(acme, "s1", "x").isdisjoint(ids(FakePrincipal(customer_id="globex"), "s1", "x"))
    assert ids(acme, "s1", "x").isdisjoint(ids(FakePrincipal(api_key_id="key-2"), "s1", "x"))
    rec_ = response_records(acme, feed="chunks", project="enwiki", response_id="s1",
                            request_id="client-a", ts=ts)[0]
    assert rec_.request_id == "client-a"  # stored for correlation
