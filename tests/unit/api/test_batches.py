"""``/v2/batches``: list, metadata and download of hourly batches built by the real builder
from an embedded event log, with entitlements, metering seam and hostile inputs."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.feeds.batches import hours
from feedserver.feeds.batches.build import build_hour
from feedserver.feeds.batches.store import BatchManifest, read_hour
from feedserver.metering.records import UsageSink
from feedserver.plans import Plan
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing
from tests.fixtures.usage import RecordingSink
from tests.unit.api.conftest import World, build_world, make_articles
from tests.unit.api.test_snapshots import unzstd

H = datetime(2026, 3, 1, 10, tzinfo=UTC)
BASE = "/v2/batches/2026-03-01/10"
EN = "enwiki_namespace_0"


@dataclass
class BatchWorld:
    world: World
    key_en: str  # batches, enwiki only
    key_all: str  # batches, every project
    manifests: dict[str, BatchManifest]

    def h(self, key: str, **extra: str) -> dict[str, str]:
        return self.world.headers(key, **extra)


# Module-scoped (with its own event loop for the module): building the world dominates.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bworld(tmp_path_factory: pytest.TempPathFactory) -> BatchWorld:
    world = build_world(tmp_path_factory.mktemp("batches"))
    log = EmbeddedEventLog(world.db, poll_interval=0.05)
    topic = world.settings.article_topic
    start = hours.start_ms(H)
    await log.create_topic(topic, 2)
    records = []
    for wiki, lang, ns, n in (("enwiki", "en", 0, 30), ("enwiki", "en", 10, 2),
                              ("dewiki", "de", 0, 4)):
        for i, a in enumerate(make_articles(wiki, lang, ns, n)):
            records.append(Outgoing(key=f"{wiki}/{ns}/{a.identifier}".encode(),
                                    value=msgspec.json.encode(a), timestamp_ms=start + i))
    await log.append(topic, records)
    await build_hour(log, world.blobs, world.settings, H,
                     clock=lambda: hours.end_ms(H) + hours.DEFAULT_GRACE_MS)
    world.accounts.create_plan(Plan(name="batches-en", feeds=["batches"], projects=["enwiki"]))
    world.accounts.create_plan(Plan(name="batches-all", feeds=["batches"]))
    world.accounts.create_customer("delta", "batches-en")
    world.accounts.create_customer("epsilon", "batches-all")
    key_en = world.accounts.create_api_key("delta")[1]
    key_all = world.accounts.create_api_key("epsilon")[1]
    manifests = {m.identifier: m for m in read_hour(world.blobs, H).batches}
    return BatchWorld(world, key_en, key_all, manifests)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def client(bworld: BatchWorld, sink: RecordingSink) -> Iterator[TestClient[Any]]:
    w = bworld.world
    usage: UsageSink = sink  # type: ignore[assignment]
    app = build_app(w.settings, blobs=w.blobs, db=w.db, accounts=w.accounts, state=w.state,
                     registry=CollectorRegistry(), usage=usage)
    with TestClient(app) as c:
        yield c


def test_list_scoped_to_plan(client: TestClient[Any], bworld: BatchWorld) -> None:
    r = client.get(BASE, headers=bworld.h(bworld.key_en))
    assert r.status_code == 200
    assert [b["identifier"] for b in r.json()] == [EN, "enwiki_namespace_10"]
    r = client.post(BASE, headers=bworld.h(bworld.key_all), json={
        "filters": [{"field": "is_part_of.identifier", "value": "dewiki"}],
        "fields": ["identifier", "article_count", "date", "hour"]})
    assert r.json() == [{"identifier": "dewiki_namespace_0", "article_count": 4,
                         "date": "2026-03-01", "hour": "10"}]
    # A plan without the batches feed sees nothing.
    r = client.get(BASE, headers=bworld.h(bworld.world.key_a))
    assert r.status_code == 200 and r.json() == []


def test_metadata_shaped_like_snapshot(client: TestClient[Any], bworld: BatchWorld) -> None:
    m = bworld.manifests[EN]
    r = client.get(f"{BASE}/{EN}", headers=bworld.h(bworld.key_en))
    assert r.status_code == 200
    data = r.json()
    assert "chunks" not in data and "key" not in str(data)
    wme = m.representations[0].archive  # the default download: WME's tar.gz
    assert data["identifier"] == EN and data["version"] == wme.md5  # as WME
    assert data["content_root_hash"] == m.content_root_hash
    assert data["is_part_of"] == {"identifier": "enwiki"}
    assert data["in_language"] == {"identifier": "en"}
    assert data["namespace"] == {"identifier": 0}
    assert data["size"] == {"value": round(wme.size / 1e6, 3), "unit_text": "MB"}
    assert (data["date"], data["hour"], data["article_count"]) == ("2026-03-01", "10", 30)
    assert data["sha256"] == wme.sha256 and data["size_bytes"] == wme.size
    assert [(f["format"], f["sha256"]) for f in data["formats"]] == [
        ("tar.gz", wme.sha256), ("zstd", m.sha256)]
    r = client.post(f"{BASE}/{EN}", headers=bworld.h(bworld.key_en),
                    json={"fields": ["identifier"]})
    assert r.json() == {"identifier": EN}


def ndjson_of(body: bytes) -> bytes:
    """The NDJSON of a download in either representation."""
    if body[:2] == b"\x1f\x8b":
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            return b"".join(tar.extractfile(m).read()  # type: ignore[union-attr]
                            for m in tar.getmembers())
    return unzstd(body)


@pytest.mark.parametrize("accept", [None, "application/zstd"])
def test_download_range_etag_head(client: TestClient[Any], bworld: BatchWorld,
                                  sink: RecordingSink, accept: str | None) -> None:
    """The default (WME's tar.gz) and the native zstd: each its own bytes, checksums and
    ETag; ranges, 304 and HEAD on either; the bytes sent are billed."""
    m = bworld.manifests[EN]
    url = f"{BASE}/{EN}/download"
    h = bworld.h(bworld.key_en, **({"Accept": accept} if accept else {}))
    full = client.get(url, headers=h)
    assert full.status_code == 200
    body = full.content
    want = m.representations[0].archive if accept is None else m
    assert hashlib.sha256(body).hexdigest() == want.sha256
    assert len(body) == (want.size if accept is None else m.size.value)
    assert full.headers["vary"] == "Accept"
    assert full.headers["content-type"] == (accept or "application/gzip")
    lines = ndjson_of(body).splitlines()
    assert [msgspec.json.decode(x)["identifier"] for x in lines] == list(range(1, 31))
    part = client.get(url, headers={**h, "Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == body[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(body)}"
    etag = full.headers["etag"]
    assert client.get(url, headers={**h, "If-None-Match": etag}).status_code == 304
    head = client.head(url, headers=h)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(body))
    assert head.headers["accept-ranges"] == "bytes"
    sent = [r for r in sink.records if r.get("download")]
    assert {r["feed"] for r in sink.records} == {"batches"}
    assert sum(r["bytes_sent"] for r in sent) == len(body) + 90


def test_entitlement_denied(client: TestClient[Any], bworld: BatchWorld) -> None:
    for path in (f"{BASE}/dewiki_namespace_0", f"{BASE}/dewiki_namespace_0/download"):
        r = client.get(path, headers=bworld.h(bworld.key_en))
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("application/problem+json")
    # Not entitled to batches at all: 403 even for a batch that does not exist.
    assert client.get(f"{BASE}/frwiki_namespace_0",
                      headers=bworld.h(bworld.world.key_a)).status_code == 403
    assert client.get(BASE).status_code == 401


@pytest.mark.parametrize(("path", "status"), [
    # Malformed: the declared patterns refuse them (422); well-formed but no such day: 404.
    ("/v2/batches/2026-03-01/24", 422),
    ("/v2/batches/2026-02-30/10", 404),
    ("/v2/batches/2026-3-1/10", 422),
    ("/v2/batches/2026-03-01/1", 422),
    # Encoded slashes are decoded before routing: no route, or a rejected segment.
    ("/v2/batches/..%2F..%2Fetc/10", 404),
    (f"{BASE}/..%2F..%2Fsnapshots", 404),
    (f"{BASE}/enwiki_namespace_0%2F..", 404),
    (f"{BASE}/..", 404),
    (f"{BASE}/enwiki_namespace_0%00", 422),
    (f"{BASE}/ENWIKI_namespace_0/download", 422),
    (f"{BASE}/enwiki_namespace_99", 404),
    ("/v2/batches/2026-03-01/11", 404),
    ("/v2/batches/2026-03-01/11/enwiki_namespace_0/download", 404),
])
def test_bad_inputs(client: TestClient[Any], bworld: BatchWorld, path: str,
                    status: int) -> None:
    r = client.get(path, headers=bworld.h(bworld.key_all))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
