"""Proxied S3 downloads through ``feedserver serve`` (a real moto_server), as clients see them
and as the ledger bills them.

The streamed path reads ahead (the next batch, and the next chunk object opened once the one
before is read), so bytes are read from S3 before the client has them: the ledger must still
bill what the clients received, not what was read.
"""

from __future__ import annotations

import pytest

from feedserver.config import Settings
from tests.fixtures.downloads import billed_bytes, fetch_concurrently
from tests.fixtures.s3_served import s3_served

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"
CONCURRENT = 300


def test_usage_equals_bytes_received_from_s3_under_300_concurrent_requests(
        s3_settings: Settings) -> None:
    # A whole download crosses several chunk objects (the next one is opened ahead).
    with s3_served(s3_settings) as served:
        auth = {"Authorization": f"Bearer {served.key}", "Accept": "application/zstd"}
        url = f"{served.server.url}/v2/snapshots/{SNAPSHOT}/download"
        whole = served.whole
        size = len(whole)

        def request(i: int) -> tuple[str, dict[str, str], bytes]:
            if i % 2 == 0:
                return url, {}, whole
            lo = (i * 7919) % (size - 1)
            hi = min(size - 1, lo + 300_000)  # across a chunk object's end
            return url, {"Range": f"bytes={lo}-{hi}"}, whole[lo:hi + 1]

        received = fetch_concurrently(request, auth, CONCURRENT)
    # The server stopped gracefully: its writer flushed every final record to the ledger.
    assert received > 0
    assert billed_bytes(served.settings.data_path / "feedserver.db") == received
