"""Downloads served from the S3 blob store (a real moto_server): streamed, or a 307 to a
short-lived presigned URL when ``s3_redirect_downloads`` is on."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_snapshots
from feedserver.feeds.snapshots.manifest import wme_archive
from feedserver.storage.blobs import open_blob_store
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS

pytestmark = pytest.mark.integration

CORPUS = DUMPS / "gensim-4.4.0" / "testcorpus.xml.bz2"
SNAP = "simplewiki_namespace_0"


def _client(settings: Settings) -> tuple[TestClient[Any], dict[str, str], Any]:
    blobs = open_blob_store(settings)
    (manifest,) = build_snapshots([CORPUS], blobs, settings, wiki="simplewiki")
    db = SQLiteDatabase(settings.data_path / "feedserver.db")
    accounts = Accounts(db, settings)
    accounts.create_customer("acme", "free")
    key = accounts.create_api_key("acme")[1]
    app = build_app(settings, blobs=blobs, db=db, accounts=accounts,
                     registry=CollectorRegistry())
    return TestClient(app), {"Authorization": f"Bearer {key}"}, manifest


def test_streamed_from_s3(s3_settings: Settings) -> None:
    settings = msgspec.structs.replace(s3_settings, chunk_size=2048, metering_enabled=False)
    client, auth, m = _client(settings)
    with client:
        assert client.get("/readyz").status_code == 200
        # WME's tar.gz (the default): rebuilt headers and parts read from S3.
        wme = wme_archive(m.representations)
        assert wme is not None
        r = client.get(f"/v2/snapshots/{SNAP}/download", headers=auth)
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == wme.archive.sha256
        native = {**auth, "Accept": "application/zstd"}
        r = client.get(f"/v2/snapshots/{SNAP}/download", headers=native)
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == m.sha256
        r = client.get(f"/v2/snapshots/{SNAP}/download",
                       headers={**native, "Range": f"bytes=3-{m.chunks[0].size + 3}"})
        assert r.status_code == 206 and len(r.content) == m.chunks[0].size + 1


def test_redirect_to_presigned_url(s3_settings: Settings) -> None:
    settings = msgspec.structs.replace(s3_settings, s3_redirect_downloads=True,
                                       presign_seconds=60, metering_enabled=False)
    client, auth, m = _client(settings)
    with client:
        chunk = m.chunks[0]
        # The default chunk_0.tar.gz is laid out from several pieces: served, not redirected.
        r = client.get(f"/v2/snapshots/{SNAP}/chunks/0/download", headers=auth,
                       follow_redirects=False)
        assert r.status_code == 200 and r.content[:2] == b"\x1f\x8b"
        # The zstd chunk is one stored object: redirected.
        auth = {**auth, "Accept": "application/zstd"}
        r = client.get(f"/v2/snapshots/{SNAP}/chunks/0/download", headers=auth,
                       follow_redirects=False)
        assert r.status_code == 307
        location = r.headers["location"]
        assert location.startswith(settings.s3_endpoint_url or "")
        body = httpx.get(location, timeout=30).content
        assert hashlib.sha256(body).hexdigest() == chunk.sha256
        # One Range: redirected too, to a URL signed for exactly that Range header (the
        # client repeats its Range when it follows the redirect).
        r = client.get(f"/v2/snapshots/{SNAP}/chunks/0/download",
                       headers={**auth, "Range": "bytes=0-3"}, follow_redirects=False)
        assert r.status_code == 307
        ranged = r.headers["location"]
        signed = parse_qs(urlsplit(ranged).query)["X-Amz-SignedHeaders"][0].split(";")
        assert "range" in signed
        got = httpx.get(ranged, headers={"Range": "bytes=0-3"}, timeout=30)
        assert got.status_code == 206 and got.content == body[:4]
        # A Range the URL cannot sign as written (several ranges, a suffix) is served by
        # the API itself.
        for spec in ("bytes=0-1,4-5", "bytes=-4"):
            r = client.get(f"/v2/snapshots/{SNAP}/chunks/0/download",
                           headers={**auth, "Range": spec}, follow_redirects=False)
            assert r.status_code == 206, spec
        # HEAD never redirects.
        r = client.head(f"/v2/snapshots/{SNAP}/chunks/0/download", headers=auth)
        assert r.status_code == 200 and int(r.headers["content-length"]) == chunk.size


def test_redirect_is_metered_as_the_bytes_the_url_serves(s3_settings: Settings) -> None:
    """The 307 is billed at once: the presigned URL hands out the object (or the one range it
    is bound to) to whoever follows it, and the API never sees those bytes go."""
    settings = msgspec.structs.replace(s3_settings, s3_redirect_downloads=True,
                                       presign_seconds=60)
    client, auth, m = _client(settings)
    auth = {**auth, "Accept": "application/zstd"}  # the stored object (tar.gz is streamed)
    chunk = m.chunks[0]
    with client:
        r = client.get(f"/v2/snapshots/{SNAP}/chunks/0/download", headers=auth,
                       follow_redirects=False)
        assert r.status_code == 307
        r = client.get(f"/v2/snapshots/{SNAP}/chunks/0/download",
                       headers={**auth, "Range": "bytes=10-19"}, follow_redirects=False)
        assert r.status_code == 307
    # The lifespan ended: the usage writer flushed every record to the ledger.
    db = SQLiteDatabase(settings.data_path / "feedserver.db")
    try:
        row = db.fetchone("SELECT SUM(quantity) FROM usage_ledger WHERE meter = 'bytes'")
    finally:
        db.close()
    assert row is not None and int(row[0]) == chunk.size + 10
