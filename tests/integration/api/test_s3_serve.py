"""Proxied S3 downloads through ``feedserver serve`` (a real moto_server), as clients see them
and as the ledger bills them.

The streamed path reads ahead (the next batch, and the next chunk object opened once the one
before is read), so bytes are read from S3 before the client has them: the ledger must still
bill what the clients received, not what was read.
"""

from __future__ import annotations

import msgspec
import pytest

from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.storage.blobs import open_blob_store
from tests.fixtures.articles import random_articles
from tests.fixtures.downloads import (
    SYNTHETIC_ENWIKI,
    billed_bytes,
    fetch_concurrently,
    snapshot_customer_key,
)
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"
CONCURRENT = 300


def test_usage_equals_bytes_received_from_s3_under_300_concurrent_requests(
        s3_settings: Settings) -> None:
    # Random text is incompressible: every chunk object is about ``chunk_size`` bytes, so
    # a whole download crosses several objects (the next one is opened ahead).
    settings = msgspec.structs.replace(s3_settings, chunk_size=256 * 1024)
    blobs = open_blob_store(settings)
    articles = random_articles(12, random_bytes=60_000)
    (manifest,) = build_from_records(SYNTHETIC_ENWIKI, articles, blobs, settings)
    assert len(manifest.chunks) >= 3
    whole = b"".join(blobs.get_bytes(c.key) for c in manifest.chunks)
    key = snapshot_customer_key(settings.data_path / "feedserver.db")
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

        def request(i: int) -> tuple[str, dict[str, str], bytes]:
            if i % 2 == 0:
                return url, {}, whole
            lo = (i * 7919) % (size - 1)
            hi = min(size - 1, lo + 300_000)  # across a chunk object's end
            return url, {"Range": f"bytes={lo}-{hi}"}, whole[lo:hi + 1]

        received = fetch_concurrently(request, auth, CONCURRENT)
    finally:
        server.stop()  # graceful: the writer flushes every final record to the ledger
    assert received > 0
    assert billed_bytes(settings.data_path / "feedserver.db") == received
