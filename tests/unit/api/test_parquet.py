"""Parquet shards through the API (in-process): listing, metadata, downloads with Range and
HEAD, the plan's format flag, the 404 that says how to get Parquet, corrupt shards never
served, and the diff's shards."""

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
from feedserver.cli import main
from feedserver.errors import IntegrityError
from feedserver.feeds.diffs.build import build_diff
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.plans import Plan
from tests.unit.api.conftest import World, build_world, dump_info, make_articles

EN = "enwiki_namespace_0"
DE = "dewiki_namespace_0"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    # Tiny shards and row groups: several of each from 40 small articles.
    w = build_world(tmp_path_factory.mktemp("parquet"), parquet_enabled=True,
                    parquet_shard_size=20_000, parquet_row_group_size=4_000)
    # dewiki: one more version built WITHOUT Parquet (the current one), and a diff of it.
    plain = msgspec.structs.replace(w.settings, parquet_enabled=False)
    for m in build_from_records(dump_info("dewiki", "de"), make_articles("dewiki", "de", 0, 14),
                                w.blobs, plain):
        w.manifests[m.identifier] = m
    # enwiki: a second version (with Parquet) and its diff (with Parquet).
    for m in build_from_records(dump_info("enwiki", "en"),
                                make_articles("enwiki", "en", 0, 42, start=3), w.blobs,
                                w.settings):
        w.manifests[m.identifier] = m
    for identifier in (EN, DE):
        assert build_diff(w.blobs, w.settings, identifier) is not None
    w.accounts.create_plan(Plan(name="ndjson-only", feeds=["snapshots", "diffs"],
                                projects=["enwiki"], formats=[]))
    w.accounts.create_customer("delta", "ndjson-only")
    w.accounts.create_plan(Plan(name="de-all", feeds=["snapshots", "diffs"],
                                projects=["dewiki"]))
    w.accounts.create_customer("epsilon", "de-all")
    w.accounts.create_plan(Plan(name="en-all", feeds=["snapshots", "diffs"],
                                projects=["enwiki"]))
    w.accounts.create_customer("zeta", "en-all")
    return w


@pytest.fixture
def client(world: World) -> Iterator[TestClient[Any]]:
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                    state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


def key_of(world: World, customer: str) -> str:
    return world.accounts.create_api_key(customer)[1]


def test_list_info_and_download(world: World, client: TestClient[Any]) -> None:
    auth = world.headers(world.key_a)
    listed = client.get(f"/v2/snapshots/{EN}/parquet", headers=auth)
    assert listed.status_code == 200, listed.text
    shards = listed.json()
    manifest = world.manifests[EN]
    assert manifest.parquet is not None and len(shards) == len(manifest.parquet.shards) > 2
    assert sum(s["rows"] for s in shards) == manifest.article_count
    meta = client.get(f"/v2/snapshots/{EN}", headers=auth).json()
    assert meta["parquet"] == [s["identifier"] for s in shards]
    rows = []
    for shard in shards:
        by_id = client.get(f"/v2/snapshots/{EN}/parquet/{shard['identifier']}", headers=auth)
        assert by_id.json() == client.get(f"/v2/snapshots/{EN}/parquet/{shard['index']}",
                                          headers=auth).json() == shard
        head = client.head(f"/v2/snapshots/{EN}/parquet/{shard['index']}/download",
                           headers=auth)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == shard["size_bytes"]
        assert head.headers["content-type"] == "application/vnd.apache.parquet"
        got = client.get(f"/v2/snapshots/{EN}/parquet/{shard['index']}/download", headers=auth)
        assert got.status_code == 200
        assert got.headers["etag"] == f'"sha256:{shard["sha256"]}"'
        assert hashlib.sha256(got.content).hexdigest() == shard["sha256"]
        rows += pq.read_table(io.BytesIO(got.content), columns=["id"]).column(0).to_pylist()
    ids = [str(a.identifier) for a in SnapshotStore(world.blobs).iter_articles(manifest)]
    assert rows == ids
    # A range read: the last 8 bytes are the footer length and the magic.
    tail = client.get(f"/v2/snapshots/{EN}/parquet/0/download",
                      headers={**auth, "Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content[-4:] == b"PAR1"
    assert tail.headers["content-range"].endswith(f"/{shards[0]['size_bytes']}")


def test_older_version_and_fields(world: World, client: TestClient[Any]) -> None:
    auth = world.headers(world.key_a)
    old = client.get(f"/v2/snapshots/{EN}/parquet", params={"version": 1}, headers=auth)
    assert old.status_code == 200 and {s["version_number"] for s in old.json()} == {1}
    some = client.post(f"/v2/snapshots/{EN}/parquet", headers=auth,
                       json={"fields": ["identifier", "rows"], "limit": 2})
    assert some.status_code == 200 and len(some.json()) == 2
    assert set(some.json()[0]) == {"identifier", "rows"}
    bad = client.post(f"/v2/snapshots/{EN}/parquet", headers=auth, json={"fields": ["nope"]})
    assert bad.status_code == 422


def test_not_built_says_how_to_get_it(world: World, client: TestClient[Any]) -> None:
    auth = world.headers(key_of(world, "epsilon"))
    r = client.get(f"/v2/snapshots/{DE}/parquet", headers=auth)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("/parquet-not-built")
    current = world.manifests[DE].version
    # Where the same data is, which versions have Parquet, and how it gets published.
    assert f"/v2/snapshots/{DE}/download?version={current}" in body["detail"]
    assert "Versions with Parquet: 1, 2" in body["detail"]
    assert "FEEDSERVER_PARQUET_ENABLED=true" in body["detail"]
    for path in (f"/v2/snapshots/{DE}/parquet/0", f"/v2/snapshots/{DE}/parquet/0/download",
                 f"/v2/diffs/{DE}/parquet"):
        assert client.get(path, headers=auth).json()["type"].endswith("/parquet-not-built")
    assert client.get(f"/v2/snapshots/{DE}/parquet", params={"version": 1},
                      headers=auth).status_code == 200


def test_entitlements(world: World, client: TestClient[Any]) -> None:
    # A plan without the Parquet format: 403 naming it, the NDJSON still served.
    ndjson = world.headers(key_of(world, "delta"))
    r = client.get(f"/v2/snapshots/{EN}/parquet", headers=ndjson)
    assert r.status_code == 403 and "Parquet" in r.json()["detail"]
    assert client.get(f"/v2/snapshots/{EN}/parquet/0/download", headers=ndjson
                      ).status_code == 403
    assert client.head(f"/v2/snapshots/{EN}/download", headers=ndjson).status_code == 200
    # Another project's shards: 403 whether or not they exist, before anything is read.
    assert client.get(f"/v2/snapshots/{DE}/parquet", headers=world.headers(world.key_a)
                      ).status_code == 403
    assert client.get(f"/v2/snapshots/{EN}/parquet").status_code == 401


@pytest.mark.parametrize(("shard", "status"), [
    ("99", 404), ("dewiki_namespace_0_shard_0", 404), ("enwiki_namespace_0_chunk_0", 422),
    ("-1", 422), ("enwiki_namespace_0_shard_01", 422), ("%2e%2e", 422),
])
def test_bad_shard_references(world: World, client: TestClient[Any], shard: str,
                              status: int) -> None:
    r = client.get(f"/v2/snapshots/{EN}/parquet/{shard}/download",
                   headers=world.headers(world.key_a))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_diff_shards(world: World, client: TestClient[Any]) -> None:
    auth = world.headers(key_of(world, "zeta"))
    listed = client.get(f"/v2/diffs/{EN}/parquet", headers=auth)
    assert listed.status_code == 200, listed.text
    shards = listed.json()
    assert shards and {s["schema"] for s in shards} == {"diff/1"}
    assert {(s["base_version"], s["version_number"]) for s in shards} == {(1, 2)}
    meta = client.get(f"/v2/diffs/{EN}", headers=auth).json()
    assert meta["parquet"] == [s["identifier"] for s in shards]
    ops: list[str] = []
    for shard in shards:
        got = client.get(f"/v2/diffs/{EN}/parquet/{shard['index']}/download", headers=auth)
        assert got.status_code == 200
        ops += pq.read_table(io.BytesIO(got.content), columns=["op"]).column(0).to_pylist()
    counts = meta["counts"]
    assert sorted(ops) == sorted(["add"] * counts["add"] + ["update"] * counts["update"]
                                 + ["delete"] * counts["delete"])


def test_a_corrupt_shard_is_never_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    world = build_world(tmp_path, parquet_enabled=True, parquet_shard_size=20_000,
                        parquet_row_group_size=4_000)
    manifest = world.manifests[EN]
    assert manifest.parquet is not None
    shard = manifest.parquet.shards[1]
    path = tmp_path / "blobs" / shard.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit inside the data pages, size unchanged
    path.write_bytes(bytes(data))
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                    state=world.state, registry=CollectorRegistry())
    auth = world.headers(world.key_a)
    with TestClient(app) as client:
        for headers in (auth, {**auth, "Range": "bytes=0-99"}, {**auth, "Range": "bytes=-8"}):
            r = client.get(f"/v2/snapshots/{EN}/parquet/1/download", headers=headers)
            assert r.status_code == 500
            assert r.json()["type"].endswith("/integrity-error")
            assert bytes(data[:100]) not in r.content
        # The intact shards are still served.
        assert client.get(f"/v2/snapshots/{EN}/parquet/0/download", headers=auth
                          ).status_code == 200
    with pytest.raises(IntegrityError, match="shard_1"):
        SnapshotStore(world.blobs).verify(manifest)
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path))
    assert main(["snapshot", "verify", EN]) == 1
    assert "shard_1" in capsys.readouterr().err
