"""Structured Contents Parquet end to end, read by the real readers over a real server on
loopback.

The real elwikivoyage sample is built by the real builder (Parquet and Structured Contents
on); the app runs under uvicorn with metering on:

1. pyarrow.parquet reads ONE column of ONE row group of a Structured Contents shard through an
   fsspec HTTP file sending the Bearer header; the ledger bills exactly the bytes read;
2. shards downloaded whole are read by pyarrow.dataset and duckdb: row counts and ids equal
   the NDJSON Structured Contents version, the flattened sections and infoboxes give back the
   records' trees, and duckdb can query a flattened tree with SQL (unnest, parent/depth);
3. a shard damaged in the blob store fails ``snapshot verify --structured`` and is never
   served, even partially.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import msgspec
import pyarrow.dataset as ds
import pytest
import zstandard

from feedserver.errors import IntegrityError
from feedserver.feeds.snapshots.build import build_dumps
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.feeds.snapshots.structured_rows import HASH_COLUMN, SCHEMA, iter_rows, parts_tree
from feedserver.formats.hashing import ENCODER, RootHasher
from feedserver.ingest.structured import StructuredContent
from feedserver.plans import Plan
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS
from tests.fixtures.parquet_http import (
    billed_bytes,
    download_shards,
    read_one_column,
    serve_lab,
    small_shard_settings,
)

pytestmark = pytest.mark.integration

SAMPLE = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
ID = "elwikivoyage_namespace_0"
BASE = f"/v2/snapshots/structured-contents/{ID}"
DECODER = msgspec.json.Decoder(StructuredContent)


@dataclass
class World:
    url: str
    key: str
    db: SQLiteDatabase
    blobs: FilesystemBlobStore
    manifest: Manifest

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("structured-parquet-http")
    settings = small_shard_settings(tmp)
    blobs = FilesystemBlobStore(tmp / "blobs")
    db = SQLiteDatabase(tmp / "feedserver.db")
    built = build_dumps([SAMPLE], blobs, settings, namespaces={0})
    (m,) = built.structured
    assert m.parquet is not None and len(m.parquet.shards) >= 3
    assert max(s.row_groups for s in m.parquet.shards) >= 3
    plan = Plan(name="labs", feeds=["structured_contents"], projects=["elwikivoyage"],
                formats=["parquet"])
    try:
        with serve_lab(settings, blobs, db, plan) as (url, key):
            yield World(url, key, db, blobs, m)
    finally:
        db.close()


def ndjson_records(world: World, client: httpx.Client) -> list[StructuredContent]:
    # The native zstd NDJSON (the default download is WME's tar.gz).
    r = client.get(f"{BASE}/download", headers={**world.auth, "Accept": "application/zstd"})
    assert r.status_code == 200, r.text
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(r.content),
                                                    read_across_frames=True) as reader:
        return [DECODER.decode(line) for line in reader.read().splitlines()]


def test_one_column_of_one_row_group_bills_only_that_read(world: World) -> None:
    assert world.manifest.parquet is not None
    shard = world.manifest.parquet.shards[1]
    url = f"{world.url}{BASE}/parquet/{shard.index}/download"
    titles, meta, group, received = read_one_column(url, world.auth, "title")
    chunk = meta.row_group(group).column(SCHEMA.names.index("title"))
    assert titles and 0 < received < shard.size / 3
    assert received <= chunk.total_compressed_size + meta.serialized_size + 64 * 1024 + 8
    billed = billed_bytes(world.db, f"{STRUCTURED_PREFIX}/{shard.filename}@v1",
                          at_least=received)
    assert billed == received, world.db.fetchall(
        "SELECT feed, meter, resource, SUM(quantity) FROM usage_ledger GROUP BY 1, 2, 3")


def test_downloaded_shards_equal_the_ndjson_version(world: World, tmp_path: Path) -> None:
    with httpx.Client(base_url=world.url, timeout=60) as client:
        shards = download_shards(client, world.auth, f"{BASE}/parquet", tmp_path / "v1")
        records = ndjson_records(world, client)
    table = ds.dataset(tmp_path / "v1", format="parquet").to_table()
    assert table.num_rows == len(records) == sum(s["rows"] for s in shards) > 1000
    assert table.column("id").to_pylist() == [str(r.identifier) for r in records]
    # The flattened trees give the records' trees back, page by page.
    for record, row in zip(records, iter_rows(table), strict=True):
        assert ENCODER.encode(parts_tree(row["sections"])) == ENCODER.encode(record.sections)
        assert ENCODER.encode(parts_tree(row["infoboxes"])) == ENCODER.encode(record.infoboxes)
    # The row hashes are the NDJSON lines' hashes: they give the content root hash.
    root = RootHasher()
    for digest in table.column(HASH_COLUMN).to_pylist():
        root.add(digest)
    assert root.hexdigest() == world.manifest.content_root_hash
    files = sorted(str(p) for p in (tmp_path / "v1").glob("*.parquet"))
    con = duckdb.connect()
    ids = [r[0] for r in con.sql(f"SELECT id FROM read_parquet({files!r})").fetchall()]
    assert ids == [str(r.identifier) for r in records]
    # A lab's query over a flattened tree: the top-level section names of every page, as
    # unnest + depth = 0 gives them, equal the records' own.
    got = con.sql(
        f"SELECT id, list(s.name ORDER BY s.path) FROM (SELECT id, unnest(sections) AS s "
        f"FROM read_parquet({files!r})) WHERE s.depth = 0 AND s.type = 'section' GROUP BY id"
    ).fetchall()
    want = {str(r.identifier): [p.name for p in r.sections or () if p.type == "section"]
            for r in records}
    assert got and all(sorted(names, key=str) == sorted(want[i], key=str)
                       for i, names in got)
    # Typed columns, not JSON strings: the references' metadata is a map. ("references" is
    # an SQL keyword: quoted.)
    refs = con.sql(f'SELECT count(*) FROM (SELECT unnest("references") AS r FROM '
                   f"read_parquet({files!r})) WHERE r.metadata IS NOT NULL").fetchall()
    assert refs[0][0] > 0
    web = con.sql(f'SELECT count(*) FROM (SELECT unnest("references") AS r FROM '
                  f"read_parquet({files!r})) WHERE r.metadata['url'] IS NOT NULL").fetchall()
    assert web[0][0] > 0


def test_a_damaged_shard_fails_verify_and_is_never_served(world: World) -> None:
    assert world.manifest.parquet is not None
    shard = world.manifest.parquet.shards[-1]
    path = world.blobs.root / shard.key
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    try:
        with pytest.raises(IntegrityError):
            SnapshotStore(world.blobs, STRUCTURED_PREFIX).verify(world.manifest)
        with httpx.Client(base_url=world.url, timeout=60) as client:
            for extra in ({}, {"Range": "bytes=-8"}):
                r = client.get(f"{BASE}/parquet/{shard.index}/download",
                               headers={**world.auth, **extra})
                assert r.status_code == 500 and r.json()["type"].endswith("/integrity-error")
    finally:
        path.write_bytes(original)  # other tests of the module read it
