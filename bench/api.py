"""HTTP API throughput, as ratios to plain baselines measured in the same run.

(a) download, in each representation: an authenticated GET of a snapshot (metering on) from
    ``feedserver serve`` as zstd NDJSON (``Accept: application/zstd``: several chunk files
    back to back) and as WME's tar.gz (the default: stored parts and rebuilt tar headers),
    each versus the same bytes as one file from a plain litestar static-files app under the
    same uvicorn (the same HTTP protocol class, which offers the zero-copy extension;
    litestar's static files do not use it). Targets: zstd >= 0.9x, tar.gz >= 0.8x. Also
    reported: ``python -m http.server`` (it writes synchronously, without asyncio or h11).
    Both arms of each pair are read by the same client, curl, whose own CPU is printed;
    method, sample sizes and spread: ``bench/_downloads.py``.
(b) on-demand: sequential ``GET /v2/articles/{name}`` lookups/s with an API key, versus an
    unauthenticated litestar "hello" endpoint under the same uvicorn. Target >= 0.6x: the gap
    is authentication, entitlements, admission, the state-store query and the usage record.
    The same titles are looked up in every run (on PostgreSQL, from each process's read cache
    after the first); also reported, not a target: titles never looked up before.

The plan has a rate limit and every quota, set too high ever to refuse, so admission does
all of its work. Every server is a separate process on 127.0.0.1 (so the client does not
share their GIL). Both run again with PostgreSQL instead of SQLite for accounts, state,
ledger and limits (the distributed case) when PostgreSQL is installed.
"""

from __future__ import annotations

import hashlib
import os
import random
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec

from bench import _downloads, _postgres
from bench._cpu import process_cpu
from bench._targets import check
from feedserver.accounts.service import Accounts
from feedserver.config import Settings, load_settings
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import Manifest, wme_archive
from feedserver.formats.wme_layout import read_range, snapshot_archive
from feedserver.ingest.siteinfo import DumpInfo
from feedserver.models import Article, ArticleBody, Namespace, Project, Version
from feedserver.plans import Plan, Quotas, RateLimit
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import Database, SQLiteDatabase
from feedserver.storage.db.postgres import PostgresDatabase
from tests.fixtures.processes import stop_process

REPEATS = 5
ARTICLES = 4000
TEXT_BYTES = 12_000  # random text: compresses little, so the download is ~35 MB
LOOKUPS = 400
SECRET = "bench-secret-0123456789abcdef0123"

# The baselines' app: an unauthenticated hello endpoint and static files, nothing else.
PLAIN_APP = textwrap.dedent("""
    import sys, uvicorn
    from litestar import Litestar, get
    from litestar.static_files import create_static_files_router

    @get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    static = create_static_files_router("/static", directories=[sys.argv[2]])
    # The protocol class `feedserver serve` runs: uvicorn's h11 one plus the zero-copy extension
    from feedserver.api.zerocopy_server import ZeroCopyH11Protocol
    uvicorn.run(Litestar([hello, static]), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning", http=ZeroCopyH11Protocol)
""")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: list[str], url: str, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[:3]} exited early")
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not ready") from None
                time.sleep(0.1)
        yield proc
    finally:
        stop_process(proc, timeout=10)


def articles() -> Iterator[Article]:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + " "
    for i in range(1, ARTICLES + 1):
        yield Article(
            name=f"Page {i}", identifier=i, namespace=Namespace(identifier=0),
            is_part_of=Project(identifier="benchwiki"),
            date_modified=datetime(2024, 1, 1, tzinfo=UTC),
            article_body=ArticleBody(wikitext="".join(rng.choices(alphabet, k=TEXT_BYTES))),
            version=Version(identifier=i),
        )


def best_of_interleaved(a: Callable[[], float], b: Callable[[], float]) -> tuple[float, float]:
    """Best of ``REPEATS`` runs each, alternating, so load from other processes on a shared
    machine hits both sides alike."""
    ra, rb = [], []
    for _ in range(REPEATS):
        ra.append(a())
        rb.append(b())
    return max(ra), max(rb)


def download_mbps(url: str, headers: dict[str, str], size: int) -> float:
    with httpx.Client(timeout=120) as client:
        start = time.perf_counter()
        got = 0
        with client.stream("GET", url, headers=headers) as r:
            r.raise_for_status()
            for block in r.iter_raw(1 << 20):
                got += len(block)
        elapsed = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"{url}: got {got} bytes, expected {size}")
    return size / 1e6 / elapsed


def cpu_counted(cpu: dict[int, float], pid: int, measure: Callable[[], float]) -> float:
    """``measure()``, adding the CPU time process ``pid`` spent meanwhile to ``cpu[pid]``:
    unlike MB/s, CPU per byte hardly moves with the load of other processes."""
    before = process_cpu(pid)
    value = measure()
    cpu[pid] += process_cpu(pid) - before
    return value


def lookups_per_s(url: str, headers: dict[str, str], paths: list[str]) -> float:
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        client.get(paths[0]).raise_for_status()  # warm-up (connection, caches)
        start = time.perf_counter()
        for path in paths:
            client.get(path).raise_for_status()
        return len(paths) / (time.perf_counter() - start)


def unseen_paths(run: int) -> list[str]:
    """``LOOKUPS`` titles of their own for ``run`` >= 1 (run 0's are the repeated ones)."""
    return [f"/v2/articles/Page_{1 + n % ARTICLES}"
            for n in range(run * LOOKUPS, (run + 1) * LOOKUPS)]


PLAN = Plan(name="bench", feeds=["snapshots", "ondemand"],
            quotas=Quotas(snapshot_downloads=10**9, chunk_downloads=10**9,
                          ondemand_lookups=10**9, bytes=10**15),
            rate_limit=RateLimit(requests_per_second=10**6, burst=10**6))


def seed(db: Database, settings: Settings) -> str:
    """Articles in the state store, the plan, a customer and its API key."""
    StateStore(db).load_articles(articles())
    accounts = Accounts(db, settings)
    accounts.create_plan(PLAN)
    accounts.create_customer("bench", "bench")
    return accounts.create_api_key("bench")[1]


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        settings = load_settings(env={}, data_dir=str(root / "data"),
                                 chunk_size=16 * 1024 * 1024, token_secret=SECRET)
        blobs = FilesystemBlobStore(settings.blob_root)
        info = DumpInfo(wiki="benchwiki", site_name="Bench", base_url="", language="en",
                        namespaces={0: ""}, schema_version="0.11", source="bench")
        (manifest,) = build_from_records(info, articles(), blobs, settings)
        db = SQLiteDatabase(settings.data_path / "feedserver.db")
        key = seed(db, settings)
        db.close()
        # The baseline files: the exact bytes of each representation of the download.
        static = root / "static"
        static.mkdir()
        whole = static / "snapshot.ndjson.zst"
        with whole.open("wb") as out:
            for chunk in manifest.chunks:
                for block in blobs.open_range(chunk.key):
                    out.write(block)
        assert hashlib.sha256(whole.read_bytes()).hexdigest() == manifest.sha256
        archive = static / "snapshot.tar.gz"
        wme = wme_archive(manifest.representations)
        assert wme is not None
        with archive.open("wb") as out:
            for block in read_range(
                    snapshot_archive(manifest.identifier, [c.wme.part for c in manifest.chunks
                                                           if c.wme is not None]),
                    lambda i, start, stop: blobs.open_range(
                        manifest.chunks[i].wme.key, start, stop)):  # type: ignore[union-attr]
                out.write(block)
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == wme.archive.sha256

        env = {**os.environ, "FEEDSERVER_DATA_DIR": str(settings.data_path),
               "FEEDSERVER_TOKEN_SECRET": SECRET, "FEEDSERVER_LOG_LEVEL": "WARNING"}
        compare(env, key, manifest, whole, archive, "sqlite")
        if not _postgres.available():
            print("postgresql: not installed (make system-deps); distributed pass skipped")
            return
        with _postgres.cluster() as url:
            pg = PostgresDatabase(url, max_size=2)
            try:
                key = seed(pg, msgspec.structs.replace(settings, database_url=url))
            finally:
                pg.close()
            compare({**env, "FEEDSERVER_DATABASE_URL": url}, key, manifest, whole, archive,
                    "postgresql")


def compare(env: dict[str, str], key: str, manifest: Manifest, whole: Path, archive: Path,
            database: str) -> None:
    size = whole.stat().st_size
    api_port, static_port, hello_port = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    auth = {"Authorization": f"Bearer {key}"}
    zstd = {**auth, "Accept": "application/zstd"}
    feedserver = [sys.executable, "-m", "feedserver", "serve", "--port", str(api_port)]
    with process(feedserver, f"{api}/healthz", env) as ours_proc, \
            process([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                     "--directory", str(whole.parent), str(static_port)],
                    f"http://127.0.0.1:{static_port}/") as simple_proc, \
            process([sys.executable, "-c", PLAIN_APP, str(hello_port), str(whole.parent)],
                    f"http://127.0.0.1:{hello_port}/hello") as plain_proc:
        dl = f"{api}/v2/snapshots/{manifest.identifier}/download"
        static_url = f"http://127.0.0.1:{hello_port}/static"
        if not _downloads.available():
            print("curl: not installed; download comparisons skipped", flush=True)
        else:
            ours = _downloads.Arm(dl, zstd, ours_proc.pid)
            zst = _downloads.compare(
                ours, _downloads.Arm(f"{static_url}/{whole.name}", {}, plain_proc.pid),
                size, manifest.sha256)
            print(f"[{database}] download zstd NDJSON {size / 1e6:.1f} MB in "
                  f"{len(manifest.chunks)} chunks: "
                  + zst.line("feedserver", "litestar static files"), flush=True)
            check("authenticated snapshot download vs litestar static files", zst.ratio, 0.9,
                  database=database)
            if database == "sqlite":
                wme = wme_archive(manifest.representations)
                assert wme is not None
                gz_size = archive.stat().st_size
                gz = _downloads.compare(
                    _downloads.Arm(dl, auth, ours_proc.pid),
                    _downloads.Arm(f"{static_url}/{archive.name}", {}, plain_proc.pid),
                    gz_size, wme.archive.sha256)
                print(f"[{database}] download WME tar.gz {gz_size / 1e6:.1f} MB (the default): "
                      + gz.line("feedserver", "litestar static files"), flush=True)
                check("authenticated WME tar.gz download vs litestar static files", gz.ratio,
                      0.8, database=database)
                simple = _downloads.compare(
                    ours, _downloads.Arm(f"http://127.0.0.1:{static_port}/{whole.name}", {},
                                         simple_proc.pid), size, manifest.sha256)
                print("download zstd NDJSON vs python -m http.server: "
                      + simple.line("feedserver", "http.server"), flush=True)
        paths = [f"/v2/articles/Page_{1 + i % ARTICLES}" for i in range(LOOKUPS)]
        looked, hello = best_of_interleaved(
            lambda: lookups_per_s(api, auth, paths),
            lambda: lookups_per_s(f"http://127.0.0.1:{hello_port}", {}, ["/hello"] * LOOKUPS))
        print(f"[{database}] on-demand: {looked:.0f} lookups/s with auth, hello endpoint "
              f"{hello:.0f} req/s", flush=True)
        check("on-demand lookup with auth vs hello endpoint", looked / hello, 0.6,
              database=database)
        # Not a target: the same with titles never looked up before (each run its own), so
        # nothing is served from a cache of earlier reads.
        runs = iter(range(1, REPEATS + 1))
        cold, hello = best_of_interleaved(
            lambda: lookups_per_s(api, auth, unseen_paths(next(runs))),
            lambda: lookups_per_s(f"http://127.0.0.1:{hello_port}", {}, ["/hello"] * LOOKUPS))
        print(f"[{database}] on-demand, titles not looked up before: {cold:.0f} lookups/s, "
              f"hello endpoint {hello:.0f} req/s, {cold / hello:.2f}x", flush=True)


if __name__ == "__main__":
    run()
