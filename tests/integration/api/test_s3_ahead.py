"""A proxied S3 download opens its first chunk object while it reads the publish pointer
(from the version the last pointer read named current), and keeps that open only when the
pointer agrees: a real moto_server, the app in process. Whatever was opened ahead and not
used is closed (no connection left open), and the bytes served are always those of the
version the pointer names, as versions are published, retired, and the snapshot deleted and
published again under the same keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.storage.blobs.s3 import S3BlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.articles import random_articles
from tests.fixtures.blob_reads import noting_close
from tests.fixtures.downloads import SYNTHETIC_ENWIKI

pytestmark = pytest.mark.integration

SNAP = "enwiki_namespace_0"
URL = f"/v2/snapshots/{SNAP}/download"


class RecordingS3(S3BlobStore):
    """The real S3 store, noting which object reads were opened and which were closed."""

    opened: list[str]
    closed: list[str]
    # Set: the next pointer read waits (bounded) until a chunk read is opened meanwhile, and
    # ``overlapped`` says whether one was: proof the open went ahead of the pointer's answer.
    gate: threading.Event | None = None
    overlapped = False

    def get_bytes(self, key: str) -> bytes:
        if self.gate is not None and key.endswith("index.json"):
            self.overlapped = self.gate.wait(5)
            self.gate = None
        return super().get_bytes(key)

    def open_range(self, key: str, start: int = 0,
                   end: int | None = None) -> Generator[bytes, None, None]:
        if self.gate is not None:
            self.gate.set()
        inner = super().open_range(key, start, end)
        self.opened.append(key)
        return noting_close(key, inner, self.closed)

    def settle(self) -> None:
        """Wait (bounded) until every read opened is closed: reads opened ahead and dropped
        are closed by a callback once their worker thread is done."""
        for _ in range(500):
            if len(self.closed) == len(self.opened):
                return
            time.sleep(0.01)


def _publish(blobs: S3BlobStore, settings: Settings, count: int) -> Manifest:
    (m,) = build_from_records(SYNTHETIC_ENWIKI, iter(random_articles(count, random_bytes=3000)),
                              blobs, settings)
    return m


def _bytes(blobs: S3BlobStore, m: Manifest) -> bytes:
    return b"".join(blobs.get_bytes(c.key) for c in m.chunks)


@pytest.fixture
def setup(s3_settings: Settings) -> Generator[tuple[TestClient[Any], dict[str, str],
                                                    RecordingS3, Settings], None, None]:
    settings = msgspec.structs.replace(s3_settings, chunk_size=8000, retention_versions=2,
                                       wme_archives=False, s3_create_bucket=True,
                                       metering_enabled=False)
    blobs = RecordingS3.from_settings(settings)
    assert isinstance(blobs, RecordingS3)
    blobs.opened, blobs.closed = [], []
    db = SQLiteDatabase(settings.data_path / "feedserver.db")
    accounts = Accounts(db, settings)
    accounts.create_customer("acme", "free")
    auth = {"Authorization": f"Bearer {accounts.create_api_key('acme')[1]}",
            "Accept": "application/zstd"}
    app = build_app(settings, blobs=blobs, db=db, accounts=accounts,
                    registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client, auth, blobs, settings


def test_the_open_ahead_is_used_when_the_pointer_agrees(
        setup: tuple[TestClient[Any], dict[str, str], RecordingS3, Settings]) -> None:
    client, auth, blobs, settings = setup
    v1 = _publish(blobs, settings, 8)
    assert len(v1.chunks) >= 2
    whole = _bytes(blobs, v1)
    assert client.get(URL, headers=auth).content == whole  # no hint yet: reads it
    blobs.settle()
    before = len(blobs.opened)
    blobs.gate = threading.Event()
    r = client.get(URL, headers=auth)
    assert r.status_code == 200 and r.content == whole
    assert blobs.overlapped  # the first chunk was opened while the pointer was read
    # Each chunk object read once: the first was opened ahead and used, not opened again.
    blobs.settle()
    assert blobs.opened[before:] == [c.key for c in v1.chunks]
    # One range inside the second chunk: the part opened ahead is exactly that slice.
    lo = v1.chunks[1].offset + 5
    r = client.get(URL, headers={**auth, "Range": f"bytes={lo}-{lo + 99}"})
    assert r.status_code == 206 and r.content == whole[lo:lo + 100]
    blobs.settle()
    assert blobs.opened[-1] == v1.chunks[1].key
    assert sorted(blobs.opened) == sorted(blobs.closed)


def test_when_the_pointer_disagrees_the_open_ahead_is_dropped(
        setup: tuple[TestClient[Any], dict[str, str], RecordingS3, Settings]) -> None:
    client, auth, blobs, settings = setup
    v1 = _publish(blobs, settings, 6)
    assert client.get(URL, headers=auth).content == _bytes(blobs, v1)  # hint: v1

    # Published since: the hint (v1) is stale. v1's first chunk is opened ahead, then
    # dropped and closed; the new version is served at once.
    v2 = _publish(blobs, settings, 7)
    r = client.get(URL, headers=auth)
    assert r.status_code == 200 and r.content == _bytes(blobs, v2)
    blobs.settle()
    assert blobs.opened.count(v1.chunks[0].key) == 2  # the first download, and ahead

    v3 = _publish(blobs, settings, 8)
    r = client.get(URL, headers=auth)
    assert r.status_code == 200 and r.content == _bytes(blobs, v3)

    # Deleted whole and published again: version 1 again, under the very same keys, but
    # another lineage, so the hint (v3) never stands for it.
    blobs.delete(list(blobs.list(f"snapshots/{SNAP}/")))
    again = _publish(blobs, settings, 5)
    assert again.version == 1
    r = client.get(URL, headers=auth)
    assert r.status_code == 200 and r.content == _bytes(blobs, again)
    blobs.settle()
    assert sorted(blobs.opened) == sorted(blobs.closed)  # nothing left open


def test_hint_for_a_retired_version_gives_404_at_once(
        setup: tuple[TestClient[Any], dict[str, str], RecordingS3, Settings]) -> None:
    client, auth, blobs, settings = setup
    v1 = _publish(blobs, settings, 4)
    assert client.get(URL, headers=auth).content == _bytes(blobs, v1)  # hint: v1
    _publish(blobs, settings, 5)
    v3 = _publish(blobs, settings, 6)  # v1 retired: pointer moved, then its objects deleted
    # The hint is v1 and the request asks for v1: its first chunk is opened ahead, but the
    # pointer no longer lists v1, so the answer is 404 and the open is dropped.
    r = client.get(URL, headers=auth, params={"version": 1})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = client.get(URL, headers=auth)
    assert r.status_code == 200 and r.content == _bytes(blobs, v3)
    blobs.settle()
    assert sorted(blobs.opened) == sorted(blobs.closed)
