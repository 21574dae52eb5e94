"""Proxied S3 downloads through ``feedserver serve`` (a real moto_server), as clients see them
and as the ledger bills them.

The streamed path reads ahead (the next batch, and the next chunk object opened once the one
before is read), so bytes are read from S3 before the client has them: the ledger must still
bill what the clients received, not what was read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import msgspec
import pytest

from feedserver.accounts.admin import AccountAdmin
from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.ingest.siteinfo import DumpInfo
from feedserver.metering.ledger import Ledger
from feedserver.plans import Plan
from feedserver.storage.blobs import open_blob_store
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.articles import random_articles
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"
CONCURRENT = 300


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


def test_usage_equals_bytes_received_from_s3_under_300_concurrent_requests(
        s3_settings: Settings) -> None:
    # Random text is incompressible: every chunk object is about ``chunk_size`` bytes, so
    # a whole download crosses several objects (the next one is opened ahead).
    settings = msgspec.structs.replace(s3_settings, chunk_size=256 * 1024)
    info = DumpInfo(wiki="enwiki", site_name="Wikipedia", base_url="https://en.wikipedia.org",
                    language="en", namespaces={0: ""}, schema_version="0.11", source="synthetic")
    blobs = open_blob_store(settings)
    (manifest,) = build_from_records(info, random_articles(12, random_bytes=60_000), blobs,
                                     settings)
    assert len(manifest.chunks) >= 3
    whole = b"".join(blobs.get_bytes(c.key) for c in manifest.chunks)
    db = SQLiteDatabase(settings.data_path / "feedserver.db")
    try:
        admin = AccountAdmin(db)
        admin.create_plan(Plan(name="snap", feeds=["snapshots"]))
        admin.create_customer("Acme", plan="snap")
        key = admin.create_api_key("Acme")[1]
    finally:
        db.close()
    env = server_env(settings.data_path, blob_backend="s3",
                     s3_endpoint_url=str(settings.s3_endpoint_url),
                     s3_bucket=settings.s3_bucket, s3_access_key_id="testing",
                     s3_secret_access_key="testing")
    server = ServerProcess(env).start()
    received = 0
    try:
        auth = {"Authorization": f"Bearer {key}", "Accept": "application/zstd"}
        url = f"{server.url}/v2/snapshots/{SNAPSHOT}/download"
        size = len(whole)

        def request(i: int) -> tuple[dict[str, str], bytes]:
            if i % 2 == 0:
                return {}, whole
            lo = (i * 7919) % (size - 1)
            hi = min(size - 1, lo + 300_000)  # across a chunk object's end
            return {"Range": f"bytes={lo}-{hi}"}, whole[lo:hi + 1]

        async def run() -> int:
            limits = httpx.Limits(max_connections=CONCURRENT)
            async with httpx.AsyncClient(timeout=120, headers=auth, limits=limits) as http:
                async def one(i: int) -> int:
                    headers, want = request(i)
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
    assert _billed_bytes(settings.data_path) == received
