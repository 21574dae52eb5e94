"""Parquet in the snapshot build and over the API, as ratios to baselines of the same run.

Input: namespace 0 of the real elwikivoyage sample dump, built by the real build path
(``build_from_records``: stage, seal, Parquet from the sealed chunks, publish) into a
filesystem blob store.

* **bytes**: the version's Parquet shards vs its zstd NDJSON chunks (same records);
* **build**: the CPU time of a build with Parquet vs the same build without it (best of
  ``REPEATS``, rounds interleaved), with Structured Contents on (the default) unless said:
  Parquet with the article texts taken from the Structured Contents (the build's way) or
  parsed a second time (as before the texts were shared), Parquet without Structured
  Contents, and how much of the Parquet part is the clean text (the same build with the
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
from feedserver.feeds.snapshots import build as snapshot_build
from feedserver.feeds.snapshots import parquet as snapshot_parquet
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest
from feedserver.feeds.snapshots.store import SnapshotStore
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


def _settings(folder: Path, parquet: bool, structured: bool = True) -> Settings:
    return Settings(data_dir=str(folder), chunk_size=4 * 1024 * 1024, parquet_enabled=parquet,
                    parquet_shard_size=SHARD, parquet_row_group_size=ROW_GROUP,
                    metering_enabled=True, token_secret="bench-secret-0123456789abcdef",
                    structured_namespaces=[0] if structured else [])


def _build(info: DumpInfo, articles: list[Article], parquet: bool,
           structured: bool = True) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), parquet, structured)
        # CPU time of this process (the build runs in it, no pool): on a shared machine it
        # moves far less with the load than the wall clock does.
        start = time.process_time()
        build_from_records(info, articles, FilesystemBlobStore(Path(tmp) / "blobs"), settings)
        return time.process_time() - start


def _build_placeholder(info: DumpInfo, articles: list[Article]) -> float:
    # The same build (without Structured Contents, which would lend their texts) with the
    # writer's placeholder text (the wikitext): what the clean text costs is the difference.
    real = snapshot_parquet.clean_text
    snapshot_parquet.clean_text = lambda namespaces=None: wikitext_text  # type: ignore[attr-defined,assignment]
    try:
        return _build(info, articles, True, structured=False)
    finally:
        snapshot_parquet.clean_text = real  # type: ignore[attr-defined]


def _build_parsed_twice(info: DumpInfo, articles: list[Article]) -> float:
    # The article shards parse every page again instead of taking the Structured Contents'
    # texts (what the build did before they were shared).
    real = snapshot_build.StructuredTexts
    snapshot_build.StructuredTexts = lambda sealed: None  # type: ignore[assignment,misc]
    try:
        return _build(info, articles, True)
    finally:
        snapshot_build.StructuredTexts = real  # type: ignore[misc]


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
        sc = SnapshotStore(blobs, STRUCTURED_PREFIX).manifest(ID)
        assert sc.parquet is not None
        print(f"bytes, Structured Contents: zstd NDJSON {sc.size.value / 1e6:.2f} MB, Parquet "
              f"{sc.parquet.size / 1e6:.2f} MB = {sc.parquet.size / sc.size.value:.2f}x")

        runs: dict[str, list[float]] = {}
        cases: list[tuple[str, Callable[[], float]]] = [
            ("without Parquet (baseline)", lambda: _build(info, articles, False)),
            ("with Parquet, texts from the Structured Contents",
             lambda: _build(info, articles, True)),
            ("with Parquet, texts parsed again", lambda: _build_parsed_twice(info, articles)),
            ("no Structured Contents: without Parquet",
             lambda: _build(info, articles, False, structured=False)),
            ("no Structured Contents: with Parquet",
             lambda: _build(info, articles, True, structured=False)),
            ("no Structured Contents: with Parquet, placeholder text",
             lambda: _build_placeholder(info, articles)),
        ]
        for _ in range(REPEATS):
            for label, case in cases:
                runs.setdefault(label, []).append(case())
        base = min(runs[cases[0][0]])
        print(f"build CPU time, Structured Contents on unless said (best of {REPEATS}; "
              f"baseline {base:.2f} s):")
        for label, _ in cases:
            print(f"  {label:56s} {min(runs[label]) / base:5.2f}x")

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
