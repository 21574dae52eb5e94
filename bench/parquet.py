"""Parquet in the snapshot build and over the API, as ratios to baselines of the same run.

Input: namespace 0 of the real elwikivoyage sample dump, built by the real build path
(``build_from_records``: stage, seal, Parquet from the sealed chunks, publish) into a
filesystem blob store.

* **bytes**: the version's Parquet shards vs its zstd NDJSON chunks (same records);
* **build**: a build with Parquet vs the same build without it (best of ``REPEATS``, rounds
  interleaved), and how much of the Parquet part is the clean text (the same build with the
  placeholder text function);
* **range read**: one column (``text``) of one row group of a shard, median of ``READS``:
  (a) pyarrow on the local file vs pyarrow over an fsspec HTTP file against the API (uvicorn on
  loopback, metering on: footer + column chunk fetched by Range requests, each authenticated,
  admitted and billed); (b) the column chunk's bytes alone: ``pread`` of the local file vs one
  ``Range`` GET.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings
from feedserver.feeds.snapshots import parquet as snapshot_parquet
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.formats.parquet_rows import ARTICLE_SCHEMA, wikitext_text
from feedserver.ingest.dump import DumpInfo, read_dump
from feedserver.models import Article
from feedserver.plans import Plan
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.asgi import serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT.parent / "shared/data/dumps/operations-dumps-mwbzutils/sample-pages-articles.xml.bz2"
ID = "elwikivoyage_namespace_0"
REPEATS = 3
READS = 30
# Several shards of several row groups from a 13 MB sample, as the defaults give on a big wiki.
SHARD = 1_500_000
ROW_GROUP = 300_000


def _settings(folder: Path, parquet: bool) -> Settings:
    return Settings(data_dir=str(folder), chunk_size=4 * 1024 * 1024, parquet_enabled=parquet,
                    parquet_shard_size=SHARD, parquet_row_group_size=ROW_GROUP,
                    metering_enabled=True, token_secret="bench-secret-0123456789abcdef")


def _build(info: DumpInfo, articles: list[Article], parquet: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), parquet)
        start = time.perf_counter()
        build_from_records(info, articles, FilesystemBlobStore(Path(tmp) / "blobs"), settings)
        return time.perf_counter() - start


def _build_placeholder(info: DumpInfo, articles: list[Article]) -> float:
    # The same build with the writer's placeholder text (the wikitext): what the clean text
    # costs is the difference.
    real = snapshot_parquet.clean_text
    snapshot_parquet.clean_text = lambda namespaces=None: wikitext_text  # type: ignore[attr-defined,assignment]
    try:
        return _build(info, articles, True)
    finally:
        snapshot_parquet.clean_text = real  # type: ignore[attr-defined]


def _median(fn: Callable[[], Any], n: int = READS) -> float:
    fn()  # warm: the server hashes a shard once before serving it; caches fill
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _range_reads(m: Manifest, blobs_root: Path, url: str, key: str) -> None:
    assert m.parquet is not None
    shard = m.parquet.shards[len(m.parquet.shards) // 2]
    local = blobs_root / shard.key
    meta = pq.ParquetFile(local).metadata
    group = meta.num_row_groups // 2
    chunk = meta.row_group(group).column(ARTICLE_SCHEMA.names.index("text"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    length = chunk.total_compressed_size
    auth = {"Authorization": f"Bearer {key}"}
    link = f"{url}/v2/snapshots/{ID}/parquet/{shard.index}/download"
    fs = fsspec.filesystem("http", headers=auth, skip_instance_cache=True)

    def local_pyarrow() -> None:
        with pq.ParquetFile(local) as f:
            f.read_row_group(group, columns=["text"])

    def http_pyarrow() -> None:
        with fs.open(link, "rb", cache_type="none", size=shard.size) as remote, \
                pq.ParquetFile(remote, pre_buffer=False) as f:
            f.read_row_group(group, columns=["text"], use_threads=False)

    def local_bytes() -> None:
        fd = os.open(local, os.O_RDONLY)
        try:
            os.pread(fd, length, start)
        finally:
            os.close(fd)

    with httpx.Client(timeout=60) as client:
        def http_bytes() -> None:
            r = client.get(link, headers={**auth, "Range": f"bytes={start}-{start + length - 1}"})
            assert r.status_code == 206 and len(r.content) == length

        rows = [("pyarrow: one column of one row group (footer + chunk)", local_pyarrow,
                 http_pyarrow),
                (f"the column chunk's bytes alone ({length / 1e3:.0f} kB)", local_bytes,
                 http_bytes)]
        print(f"range read, shard {shard.size / 1e6:.2f} MB, row group {group} of "
              f"{meta.num_row_groups}, column text (median of {READS}):")
        for label, near, far in rows:
            t_local, t_api = _median(near), _median(far)
            print(f"  {label:58s} local {t_local * 1e3:7.2f} ms   API {t_api * 1e3:7.2f} ms"
                  f"   {t_api / t_local:6.1f}x")


def run() -> None:
    info, records = read_dump(DUMP)
    articles = [r for r in records if isinstance(r, Article) and r.namespace.identifier == 0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = _settings(folder, True)
        blobs = FilesystemBlobStore(folder / "blobs")
        (m,) = build_from_records(info, articles, blobs, settings)
        assert m.parquet is not None
        ndjson = int(m.size.value)
        print(f"{len(articles)} articles, {m.uncompressed_size / 1e6:.1f} MB NDJSON; "
              f"{len(m.parquet.shards)} Parquet shards")
        print(f"bytes: zstd NDJSON {ndjson / 1e6:.2f} MB, Parquet {m.parquet.size / 1e6:.2f} MB"
              f" = {m.parquet.size / ndjson:.2f}x")

        off, on, placeholder = [], [], []
        for _ in range(REPEATS):
            off.append(_build(info, articles, False))
            on.append(_build(info, articles, True))
            placeholder.append(_build_placeholder(info, articles))
        base = min(off)
        print(f"build (best of {REPEATS}): without Parquet {base:.2f} s = 1.00x; with Parquet "
              f"{min(on) / base:.2f}x; with Parquet, placeholder text "
              f"{min(placeholder) / base:.2f}x")

        db = SQLiteDatabase(folder / "feedserver.db")
        try:
            accounts = Accounts(db, settings)
            accounts.create_plan(Plan(name="bench", feeds=["snapshots"]))
            accounts.create_customer("bench", "bench")
            key = accounts.create_api_key("bench")[1]
            app = build_app(settings, blobs=blobs, db=db, accounts=accounts,
                            registry=CollectorRegistry())
            with serve_in_thread(app) as url:
                _range_reads(m, folder / "blobs", url, key)
        finally:
            db.close()


if __name__ == "__main__":
    run()
