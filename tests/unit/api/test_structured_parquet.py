"""Structured Contents Parquet shards through the API (in-process): listing, metadata,
downloads with Range and HEAD, entitlement (plan feed structured_contents + the Parquet
format), the 404 that says how to get them, a corrupt shard never served."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.plans import Plan
from tests.unit.api.conftest import World, build_world, dump_info, make_articles

EN = "enwiki_namespace_0"
DE = "dewiki_namespace_0"
BASE = "/v2/snapshots/structured-contents"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    # Tiny shards and row groups: several of each from 40 small articles.
    w = build_world(tmp_path_factory.mktemp("structured-parquet"), parquet_enabled=True,
                    parquet_shard_size=20_000, parquet_row_group_size=4_000)
    # dewiki: a current version built WITHOUT Parquet.
    plain = msgspec.structs.replace(w.settings, parquet_enabled=False)
    build_from_records(dump_info("dewiki", "de"), make_articles("dewiki", "de", 0, 14),
                       w.blobs, plain)
    for name, feeds, formats in (("sc", ["structured_contents"], None),
                                 ("sc-ndjson", ["structured_contents"], []),
                                 ("articles", ["snapshots"], None)):
        w.accounts.create_plan(Plan(name=name, feeds=feeds, formats=formats))
        w.accounts.create_customer(name, name)
    return w


@pytest.fixture
def client(world: World) -> Iterator[TestClient[Any]]:
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                    state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


def auth(world: World, customer: str) -> dict[str, str]:
    return world.headers(world.accounts.create_api_key(customer)[1])


def test_list_info_and_download(world: World, client: TestClient[Any]) -> None:
    headers = auth(world, "sc")
    listed = client.get(f"{BASE}/{EN}/parquet", headers=headers)
    assert listed.status_code == 200, listed.text
    shards = listed.json()
    store = SnapshotStore(world.blobs, STRUCTURED_PREFIX)
    manifest = store.manifest(EN)
    assert manifest.parquet is not None and len(shards) == len(manifest.parquet.shards) > 1
    assert {s["schema"] for s in shards} == {"structured/1"}
    assert sum(s["rows"] for s in shards) == manifest.article_count
    meta = client.get(f"{BASE}/{EN}", headers=headers).json()
    assert meta["parquet"] == [s["identifier"] for s in shards]
    ids: list[str] = []
    for shard in shards:
        one = client.get(f"{BASE}/{EN}/parquet/{shard['identifier']}", headers=headers)
        assert one.json() == shard
        url = f"{BASE}/{EN}/parquet/{shard['index']}/download"
        head = client.head(url, headers=headers)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == shard["size_bytes"]
        got = client.get(url, headers=headers)
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/vnd.apache.parquet"
        assert hashlib.sha256(got.content).hexdigest() == shard["sha256"]
        ids += pq.read_table(io.BytesIO(got.content), columns=["id"]).column(0).to_pylist()
    # Shard order is record order: the ids of the NDJSON version, one by one.
    assert ids == [str(msgspec.json.decode(line, type=_Id).identifier)
                   for line in store.iter_lines(manifest)]
    tail = client.get(f"{BASE}/{EN}/parquet/0/download", headers={**headers,
                                                                   "Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content[-4:] == b"PAR1"


class _Id(msgspec.Struct):
    identifier: int


def test_entitlement(world: World, client: TestClient[Any]) -> None:
    # The Parquet format flag: 403 naming it, the NDJSON of the same version still served.
    ndjson = auth(world, "sc-ndjson")
    r = client.get(f"{BASE}/{EN}/parquet", headers=ndjson)
    assert r.status_code == 403 and "Parquet" in r.json()["detail"]
    assert client.head(f"{BASE}/{EN}/download", headers=ndjson).status_code == 200
    # The feed: an article-snapshots plan does not cover Structured Contents shards.
    articles = auth(world, "articles")
    assert client.get(f"{BASE}/{EN}/parquet/0/download", headers=articles).status_code == 403
    assert client.get(f"/v2/snapshots/{EN}/parquet", headers=articles).status_code == 200
    assert client.get(f"{BASE}/{EN}/parquet").status_code == 401


def test_not_built_says_how_to_get_it(world: World, client: TestClient[Any]) -> None:
    headers = auth(world, "sc")
    r = client.get(f"{BASE}/{DE}/parquet", headers=headers)
    assert r.status_code == 404 and r.json()["type"].endswith("/parquet-not-built")
    detail = r.json()["detail"]
    assert f"{BASE}/{DE}/download?version=" in detail and "--structured" in detail
    assert "Versions with Parquet: 1, 2" in detail
    assert client.get(f"{BASE}/{DE}/parquet", params={"version": 1},
                      headers=headers).status_code == 200


def test_a_corrupt_shard_is_never_served(tmp_path: Path) -> None:
    world = build_world(tmp_path, parquet_enabled=True, parquet_shard_size=20_000,
                        parquet_row_group_size=4_000)
    world.accounts.create_plan(Plan(name="sc", feeds=["structured_contents"]))
    world.accounts.create_customer("sc", "sc")
    manifest = SnapshotStore(world.blobs, STRUCTURED_PREFIX).manifest(EN)
    assert manifest.parquet is not None
    path = tmp_path / "blobs" / manifest.parquet.shards[1].key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit, size unchanged
    path.write_bytes(bytes(data))
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                    state=world.state, registry=CollectorRegistry())
    headers = auth(world, "sc")
    with TestClient(app) as client:
        for extra in ({}, {"Range": "bytes=0-99"}, {"Range": "bytes=-8"}):
            r = client.get(f"{BASE}/{EN}/parquet/1/download", headers={**headers, **extra})
            assert r.status_code == 500 and r.json()["type"].endswith("/integrity-error")
            assert bytes(data[:100]) not in r.content
        assert client.get(f"{BASE}/{EN}/parquet/0/download", headers=headers
                          ).status_code == 200
