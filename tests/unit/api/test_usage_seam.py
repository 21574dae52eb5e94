"""Every metered response reaches the UsageSink once, with the bytes actually sent."""

from __future__ import annotations

from pathlib import Path

import msgspec
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.metering.service import open_metering
from feedserver.storage.eventlog import EmbeddedEventLog
from tests.fixtures.usage import RecordingSink
from tests.unit.api.conftest import World


def test_download_and_lookup_reported(world: World) -> None:
    sink = RecordingSink()
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, usage=sink, registry=CollectorRegistry())
    m = world.manifests["enwiki_namespace_0"]
    with TestClient(app) as c:
        r = c.get("/v2/snapshots/enwiki_namespace_0/download",
                  headers=world.headers(world.key_a, Range="bytes=0-99"))
        assert r.status_code == 206
        rid = r.headers["x-request-id"]
        c.head("/v2/snapshots/enwiki_namespace_0/download", headers=world.headers(world.key_a))
        c.get("/v2/articles/Page_2", headers=world.headers(world.key_a))
    dl, head, lookup = sink.records
    assert dl["feed"] == "snapshots" and dl["project"] == "enwiki" and dl["download"]
    assert dl["bytes_sent"] == 100 and dl["resource"] == f"enwiki_namespace_0@{m.version}"
    assert head["bytes_sent"] == 0 and not head["download"]
    assert lookup["feed"] == "ondemand" and lookup["articles"] == 1 and lookup["bytes_sent"] > 0
    assert len({rec["request_id"] for rec in sink.records}) == 3
    assert dl["request_id"] == rid


def test_real_metering_counts_downloads(world: World, tmp_path: Path) -> None:
    settings = msgspec.structs.replace(world.settings, metering_enabled=True,
                                       data_dir=str(tmp_path))
    metering = open_metering(settings, world.db, EmbeddedEventLog(world.db))
    app = build_app(settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, metering=metering, registry=CollectorRegistry())
    with TestClient(app) as c:
        h = world.headers(world.key_b)
        for rng in ("bytes=0-9", "bytes=10-19"):  # parallel ranges of one file: one download
            r = c.get("/v2/snapshots/dewiki_namespace_0/chunks/0/download",
                      headers={**h, "Range": rng})
            assert r.status_code == 206
        user = c.post("/v1/get-user", headers=h).json()
    assert user["chunk_requests_count"] == 1
    assert user["snapshot_requests_count"] == 0


def test_quota_and_rate_limit_problems(world: World, tmp_path: Path) -> None:
    from feedserver.plans import Plan, Quotas, RateLimit

    world.accounts.create_plan(Plan(name="one-chunk", feeds=["snapshots"],
                                    quotas=Quotas(chunk_downloads=1)))
    world.accounts.create_plan(Plan(name="slow", feeds=["snapshots"],
                                    rate_limit=RateLimit(requests_per_second=0.01, burst=1)))
    world.accounts.create_customer("delta", "one-chunk")
    world.accounts.create_customer("epsilon", "slow")
    key_d = world.accounts.create_api_key("delta")[1]
    key_e = world.accounts.create_api_key("epsilon")[1]
    world.accounts.create_plan(Plan(name="fast", feeds=["snapshots"],
                                    rate_limit=RateLimit(requests_per_second=100, burst=100)))
    world.accounts.create_customer("theta", "fast")
    key_z = world.accounts.create_api_key("theta")[1]
    settings = msgspec.structs.replace(world.settings, metering_enabled=True,
                                       data_dir=str(tmp_path))
    app = build_app(settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=CollectorRegistry())
    base = "/v2/snapshots/enwiki_namespace_0/chunks"
    with TestClient(app) as c:
        ok = c.get(f"{base}/0/download", headers=world.headers(key_d))
        assert ok.status_code == 200
        assert "ratelimit" in ok.headers and "ratelimit-policy" in ok.headers
        # A metadata answer's RateLimit headers are sent by the app with its start
        # (``send_later``): once each, beside the response's own.
        listed = c.get(base, headers=world.headers(key_z))
        assert listed.status_code == 200 and listed.json()
        names = [k.lower() for k in listed.headers.keys()]  # noqa: SIM118 (every occurrence)
        for name in ("ratelimit", "ratelimit-policy", "x-request-id", "content-type"):
            assert names.count(name) == 1, name
        assert listed.headers["ratelimit-policy"] == '"default";q=100;w=1'
        r = c.get(f"{base}/1/download", headers=world.headers(key_d))
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/quota-exceeded") and int(r.headers["retry-after"]) > 0
        assert c.head(f"{base}/1/download", headers=world.headers(key_d)).status_code == 200
        assert c.get(base, headers=world.headers(key_e)).status_code == 200
        r = c.get(base, headers=world.headers(key_e))
        assert r.status_code == 429 and r.json()["type"].endswith("/rate-limited")
        assert "retry-after" in r.headers


def test_ondemand_answers_carry_admission_headers(world: World, tmp_path: Path) -> None:
    """On-demand answers are sent without litestar's Response (``EncodedResponse``): the
    RateLimit headers of admission must still reach the client, and the quota still end."""
    from feedserver.plans import Plan, Quotas, RateLimit

    world.accounts.create_plan(Plan(name="two-lookups", feeds=["ondemand"],
                                    quotas=Quotas(ondemand_lookups=2),
                                    rate_limit=RateLimit(requests_per_second=100, burst=100)))
    world.accounts.create_customer("zeta", "two-lookups")
    key = world.accounts.create_api_key("zeta")[1]
    settings = msgspec.structs.replace(world.settings, metering_enabled=True,
                                       data_dir=str(tmp_path))
    app = build_app(settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                    state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        for _ in range(2):
            ok = c.get("/v2/articles/Page_3", headers=world.headers(key))
            assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
            assert '"ondemand_lookups";q=2' in ok.headers["ratelimit-policy"]
            assert '"default"' in ok.headers["ratelimit"]
        r = c.get("/v2/articles/Page_3", headers=world.headers(key))
        assert r.status_code == 429 and r.json()["type"].endswith("/quota-exceeded")


class _RawSink:
    """The keyword arguments each response's report hands the sink, as they are."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def record(self, principal: object, **kw: object) -> None:
        self.calls.append(kw)

    def progress(self, principal: object, **kw: object) -> None:
        del principal, kw


def test_a_report_hands_on_only_the_usage_the_response_has(world: World) -> None:
    # What is left out is its default (``Usage``); the journal line of a metadata answer is
    # then shorter by three keys, which the event loop encodes and the appender decodes per
    # response (docs/metering.md, seventeenth round). Downloads keep theirs.
    sink = _RawSink()
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, usage=sink, registry=CollectorRegistry())
    with TestClient(app) as c:
        assert c.get("/v2/snapshots/enwiki_namespace_0",
                     headers=world.headers(world.key_a)).status_code == 200
        assert c.get("/v2/snapshots/enwiki_namespace_0/download",
                     headers=world.headers(world.key_a, Range="bytes=0-9")).status_code == 206
    metadata, download = sink.calls
    assert set(metadata) == {"feed", "project", "response_id", "request_id", "bytes_sent"}
    assert download["download"] is True and download["resource"] and download["bytes_sent"] == 10
