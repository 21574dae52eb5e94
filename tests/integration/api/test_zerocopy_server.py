"""Downloads through ``feedserver serve`` (uvicorn with the zero-copy protocol: local chunk
files go out with ``sendfile``), as clients see them and as the ledger bills them.

1. The bytes are right: whole snapshot, one chunk, a Range across a chunk boundary, HEAD,
   several requests on one keep-alive connection (the protocol must leave the connection
   ready for the next request), in both representations: zstd NDJSON (chunk files only) and
   WME's tar.gz (stored deflate parts with literal rebuilt headers between them).
2. Usage equals the bytes the clients received, under 300 concurrent requests: whole
   snapshots, chunks and Ranges at once, then a graceful stop flushes the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import zstandard

from feedserver.accounts.admin import AccountAdmin
from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import Manifest, wme_archive
from feedserver.ingest.siteinfo import DumpInfo
from feedserver.metering.ledger import Ledger
from feedserver.plans import Plan
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.articles import random_articles
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"
CONCURRENT = 300
# Random text: incompressible, so every chunk file is about ``chunk_size`` bytes.
ARTICLE_BYTES = 60_000


@dataclass
class World:
    data_dir: Path
    key: str
    manifest: Manifest
    whole: bytes


@pytest.fixture
def world(tmp_path: Path) -> World:
    settings = Settings(data_dir=str(tmp_path), chunk_size=256 * 1024)
    info = DumpInfo(wiki="enwiki", site_name="Wikipedia", base_url="https://en.wikipedia.org",
                    language="en", namespaces={0: ""}, schema_version="0.11", source="synthetic")
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    (manifest,) = build_from_records(info, random_articles(12, random_bytes=ARTICLE_BYTES),
                                     blobs, settings)
    assert len(manifest.chunks) >= 3  # Ranges across chunk files need several
    whole = b"".join(blobs.get_bytes(c.key) for c in manifest.chunks)
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    try:
        admin = AccountAdmin(db)
        admin.create_plan(Plan(name="snap", feeds=["snapshots"]))
        admin.create_customer("Acme", plan="snap")
        key = admin.create_api_key("Acme")[1]
    finally:
        db.close()
    return World(tmp_path, key, manifest, whole)


def _billed_bytes(data_dir: Path) -> int:
    db = SQLiteDatabase(data_dir / "feedserver.db")
    try:
        assert Ledger(db).verify().ok
        row = db.fetchone("SELECT COALESCE(SUM(quantity), 0) FROM usage_ledger "
                          "WHERE meter = 'bytes'")
        assert row is not None
        return int(row[0])
    finally:
        db.close()


def test_bytes_are_right_and_connections_stay_usable(world: World) -> None:
    server = ServerProcess(server_env(world.data_dir)).start()
    try:
        auth = {"Authorization": f"Bearer {world.key}", "Accept": "application/zstd"}
        whole, first = world.whole, world.manifest.chunks[0]
        base = f"{server.url}/v2/snapshots/{SNAPSHOT}"
        with httpx.Client(timeout=60, headers=auth) as http:  # one keep-alive connection
            r = http.get(f"{base}/download")
            assert r.status_code == 200 and r.content == whole
            assert hashlib.sha256(r.content).hexdigest() == world.manifest.sha256
            # Across the first chunk boundary: two files, two sendfile pieces.
            start, stop = first.size - 5, first.size + 7
            r = http.get(f"{base}/download", headers={"Range": f"bytes={start}-{stop - 1}"})
            assert r.status_code == 206 and r.content == whole[start:stop]
            assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(whole)}"
            r = http.get(f"{base}/chunks/{SNAPSHOT}_chunk_0/download")
            assert r.status_code == 200 and r.content == whole[:first.size]
            r = http.head(f"{base}/download")
            assert r.status_code == 200 and r.content == b""
            assert int(r.headers["content-length"]) == len(whole)
            # Several Ranges: multipart, streamed (not zero-copy), still right.
            r = http.get(f"{base}/download", headers={"Range": "bytes=0-1,-2"})
            assert r.status_code == 206 and whole[:2] in r.content and whole[-2:] in r.content
            r = http.get(f"{base}/download", headers={"Range": "bytes=1-2"})
            assert r.content == whole[1:3]  # the connection still answers correctly
            # WME's tar.gz: its checksum, the NDJSON inside equals the zstd download's, and a
            # Range over the literal header bytes and into the first stored part.
            gz = wme_archive(world.manifest.representations)
            assert gz is not None
            r = http.get(f"{base}/download", headers={"Accept": "application/gzip"})
            assert r.status_code == 200
            archive = r.content
            assert hashlib.sha256(archive).hexdigest() == gz.archive.sha256
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r|gz") as tar:
                inside = b"".join(tar.extractfile(m).read() for m in tar)  # type: ignore[union-attr]
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(whole),
                                                                read_across_frames=True)
            assert inside == reader.read()
            r = http.get(f"{base}/download", headers={"Accept": "application/gzip",
                                                      "Range": "bytes=5-4999"})
            assert r.status_code == 206 and r.content == archive[5:5000]
    finally:
        server.stop()


def test_usage_equals_bytes_received_under_300_concurrent_requests(world: World) -> None:
    server = ServerProcess(server_env(world.data_dir)).start()
    received = 0
    try:
        auth = {"Authorization": f"Bearer {world.key}", "Accept": "application/zstd"}
        base = f"{server.url}/v2/snapshots/{SNAPSHOT}"
        size = len(world.whole)
        chunk_ids = world.manifest.chunk_identifiers()

        def request(i: int) -> tuple[str, dict[str, str], bytes]:
            if i % 3 == 0:
                return f"{base}/download", {}, world.whole
            if i % 3 == 1:
                chunk = chunk_ids[i % len(chunk_ids)]
                index = int(chunk.rsplit("_", 1)[1])
                start = sum(c.size for c in world.manifest.chunks[:index])
                want = world.whole[start:start + world.manifest.chunks[index].size]
                return f"{base}/chunks/{chunk}/download", {}, want
            lo = (i * 7919) % (size - 1)
            hi = min(size - 1, lo + 100_000)
            return f"{base}/download", {"Range": f"bytes={lo}-{hi}"}, world.whole[lo:hi + 1]

        async def run() -> int:
            limits = httpx.Limits(max_connections=CONCURRENT)
            async with httpx.AsyncClient(timeout=120, headers=auth, limits=limits) as http:
                async def one(i: int) -> int:
                    url, headers, want = request(i)
                    r = await http.get(url, headers=headers)
                    assert r.status_code in (200, 206), r.text
                    assert r.content == want
                    return len(r.content)

                got = await asyncio.wait_for(
                    asyncio.gather(*(one(i) for i in range(CONCURRENT))), 240)
                return sum(got)

        received = asyncio.run(run())
    finally:
        server.stop()  # graceful: the writer flushes every final record to the ledger
    assert received > 0
    assert _billed_bytes(world.data_dir) == received
