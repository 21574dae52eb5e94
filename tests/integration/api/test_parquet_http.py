"""Parquet shards end to end, read by the real readers over a real server on loopback.

Two versions of a real wiki (elwikivoyage) are built by the real builder with Parquet on,
the diff between them by the real diff builder; the app runs under uvicorn with metering on:

1. pyarrow.parquet reads ONE column of ONE row group of a shard through an fsspec HTTP file
   sending the Bearer header; the ledger bills exactly the bytes that read fetched (footer
   and one column chunk), a small part of the file;
2. shards downloaded whole are read by pyarrow.dataset and duckdb: row counts, ids and texts
   equal the NDJSON snapshot of the same version, and the Hugging Face features hold;
3. base + diff (both as Parquet, downloaded through the API) joined in duckdb equal the next
   version column for column, and their row hashes hash to its content root hash.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import msgspec
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import zstandard

from feedserver.feeds.diffs.build import build_diff
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.chunks import ARTICLE_DECODER
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.feeds.snapshots.shards import clean_text
from feedserver.formats.hashing import RootHasher, article_hash
from feedserver.formats.parquet_rows import ARTICLE_SCHEMA, HF_FEATURES, KEY
from feedserver.ingest.dump import DumpInfo, read_dump
from feedserver.models import Article, ArticleBody, Version
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
MEDIA_TYPE = "application/vnd.apache.parquet"


@dataclass
class World:
    url: str
    key: str
    db: SQLiteDatabase
    info: DumpInfo
    v1: Manifest
    v2: Manifest

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def two_versions(info: DumpInfo) -> tuple[list[Article], list[Article]]:
    """Version 1 and 2 of the real namespace 0: deletes, updates, adds and untouched pages."""
    _, records = read_dump(SAMPLE)
    pages = [r for r in records if isinstance(r, Article) and r.namespace.identifier == 0]
    base, extra = pages[:-80], pages[-80:]
    nxt = []
    for i, article in enumerate(base):
        if i % 17 == 0:
            continue
        if i % 9 == 0:
            body = article.article_body.wikitext if article.article_body else ""
            rev = article.version.identifier if article.version else 0
            article = msgspec.structs.replace(
                article, article_body=ArticleBody(wikitext=f"{body}\n\nNew paragraph {i}."),
                version=Version(identifier=rev + 1))
        nxt.append(article)
    return base, nxt + extra


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("parquet-http")
    settings = small_shard_settings(tmp)
    blobs = FilesystemBlobStore(tmp / "blobs")
    db = SQLiteDatabase(tmp / "feedserver.db")
    info, _ = read_dump(SAMPLE)
    base, nxt = two_versions(info)
    (v1,) = build_from_records(info, base, blobs, settings)
    (v2,) = build_from_records(info, nxt, blobs, settings)
    built = build_diff(blobs, settings, ID)
    assert built is not None and built[0].parquet is not None
    assert v1.parquet is not None and len(v1.parquet.shards) >= 3
    assert max(s.row_groups for s in v1.parquet.shards) >= 3
    plan = Plan(name="labs", feeds=["snapshots", "diffs"], projects=["elwikivoyage"])
    try:
        with serve_lab(settings, blobs, db, plan) as (url, key):
            yield World(url, key, db, info, v1, v2)
    finally:
        db.close()


def ndjson_articles(world: World, client: httpx.Client, version: int) -> list[Article]:
    r = client.get(f"/v2/snapshots/{ID}/download", params={"version": version, "format": "zstd"},
                   headers=world.auth)
    assert r.status_code == 200, r.text
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(r.content),
                                                    read_across_frames=True) as reader:
        return [ARTICLE_DECODER.decode(line) for line in reader.read().splitlines()]


def test_one_column_of_one_row_group_bills_only_that_read(world: World) -> None:
    shard = world.v1.parquet.shards[1] if world.v1.parquet else None
    assert shard is not None
    url = f"{world.url}/v2/snapshots/{ID}/parquet/{shard.index}/download?version=1"
    texts, meta, group, received = read_one_column(url, world.auth, "text")
    offset = sum(meta.row_group(g).num_rows for g in range(group))
    chunk = meta.row_group(group).column(ARTICLE_SCHEMA.names.index("text"))
    assert 0 < received < shard.size / 3  # a small part of the file...
    # ...made of the footer (pyarrow reads the tail, then the footer it names) and the
    # column chunk: nothing else crossed the wire.
    assert received <= chunk.total_compressed_size + meta.serialized_size + 64 * 1024 + 8
    billed = billed_bytes(world.db, f"{shard.filename}@v1", at_least=received)
    assert billed == received, world.db.fetchall(
        "SELECT feed, meter, resource, SUM(quantity) FROM usage_ledger GROUP BY 1, 2, 3")
    with httpx.Client(base_url=world.url, timeout=60) as client:
        articles = ndjson_articles(world, client, 1)
    cleaner = clean_text(world.info.namespaces)
    want = [cleaner(a) for a in articles[offset + sum(
        s.rows for s in world.v1.parquet.shards[: shard.index]):][: len(texts)]]
    assert texts == want


def test_downloaded_shards_equal_the_ndjson_snapshot(world: World, tmp_path: Path) -> None:
    with httpx.Client(base_url=world.url, timeout=60) as client:
        shards = download_shards(client, world.auth, f"/v2/snapshots/{ID}/parquet",
                                 tmp_path / "v2", {"version": 2}, media_type=MEDIA_TYPE)
        articles = ndjson_articles(world, client, 2)
        meta = client.get(f"/v2/snapshots/{ID}", params={"version": 2},
                          headers=world.auth).json()
    assert meta["parquet"] == [s["identifier"] for s in shards]
    cleaner = clean_text(world.info.namespaces)
    ids = [str(a.identifier) for a in articles]
    texts = [cleaner(a) for a in articles]
    assert any(texts) and texts != [a.article_body.wikitext for a in articles
                                    if a.article_body]
    table = ds.dataset(tmp_path / "v2", format="parquet").to_table(columns=["id", "text"])
    assert table.num_rows == len(articles) == sum(s["rows"] for s in shards)
    assert table.column("id").to_pylist() == ids  # shard order is record order
    assert table.column("text").to_pylist() == texts
    files = sorted(str(p) for p in (tmp_path / "v2").glob("*.parquet"))
    rows = duckdb.sql(f"SELECT id, text, article_sha256 FROM read_parquet({files!r}) "
                      "ORDER BY CAST(id AS BIGINT)").fetchall()
    hashes = {str(a.identifier): article_hash(msgspec.json.encode(a)) for a in articles}
    assert rows == sorted(((i, t, hashes[i]) for i, t in zip(ids, texts, strict=True)),
                          key=lambda r: int(r[0]))
    # The Hugging Face ``wikimedia/wikipedia`` features: what load_dataset("parquet",
    # data_files=...) infers from the Arrow schema of the same files.
    schema = ds.dataset(files, format="parquet").schema
    assert {name: str(schema.field(name).type) for name in HF_FEATURES} == HF_FEATURES
    assert schema.names[:4] == list(HF_FEATURES)
    assert pa.types.is_list(schema.field("categories").type)  # typed, not JSON strings


def test_base_plus_diff_is_the_next_version(world: World, tmp_path: Path) -> None:
    with httpx.Client(base_url=world.url, timeout=60) as client:
        download_shards(client, world.auth, f"/v2/snapshots/{ID}/parquet", tmp_path / "base",
                        {"version": 1}, media_type=MEDIA_TYPE)
        download_shards(client, world.auth, f"/v2/snapshots/{ID}/parquet", tmp_path / "next",
                        {"version": 2}, media_type=MEDIA_TYPE)
        diff = download_shards(client, world.auth, f"/v2/diffs/{ID}/parquet",
                               tmp_path / "diff", {"version": 2}, media_type=MEDIA_TYPE)
    assert {s["schema"] for s in diff} == {"diff/1"} and diff[0]["base_version"] == 1
    base, nxt, changes = (f"'{tmp_path / name}/*.parquet'" for name in ("base", "next", "diff"))
    keys = ", ".join(KEY)
    # The lab's whole "apply" (docs/formats.md): base rows the diff does not name, plus the
    # diff's added and updated rows.
    applied = (f"SELECT * FROM read_parquet({base}) AS base "
               f"ANTI JOIN read_parquet({changes}) AS diff USING ({keys}) "
               "UNION ALL SELECT * EXCLUDE (op, previous_revision_id) "
               f"FROM read_parquet({changes}) WHERE op <> 'delete'")
    want = f"SELECT * FROM read_parquet({nxt})"
    con = duckdb.connect()
    ops = dict(con.sql(f"SELECT op, count(*) FROM read_parquet({changes}) GROUP BY op"
                       ).fetchall())
    assert set(ops) == {"add", "update", "delete"}
    assert con.sql(f"SELECT * FROM read_parquet({base}) EXCEPT ALL {want}").fetchall()
    assert con.sql(f"({applied}) EXCEPT ALL ({want})").fetchall() == []
    assert con.sql(f"({want}) EXCEPT ALL ({applied})").fetchall() == []
    root = RootHasher()
    for (digest,) in con.sql(f"SELECT article_sha256 FROM ({applied})").fetchall():
        root.add(digest)
    assert root.hexdigest() == world.v2.content_root_hash
