"""The SDK's snapshot and chunk calls: list, info, HEAD, download (its HEAD + parallel Range
GETs), read. Metadata must equal what was sent and describe what was built; downloads must be
byte for byte what the server sends (WME's tar.gz, its MD5 the metadata's ``version``), and
hold exactly the snapshot's records; what the SDK reads from them is what was built."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.storage.blobs import FilesystemBlobStore
from tests.fixtures.wme_sdk import assert_parsed
from tests.integration.wme_sdk.sdk import (
    api_client,
    archive_lines,
    is_wme_archive,
    raw_download,
    served,
)
from tests.integration.wme_sdk.server import WMEServer

pytestmark = pytest.mark.integration

NS0 = "enwiki_namespace_0"


def md5(data: bytes) -> str:
    """WME's download checksum (its ``version``), not a security measure."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _store(server: WMEServer) -> SnapshotStore:
    return SnapshotStore(FilesystemBlobStore(server.data_dir / "blobs"))


def test_list_snapshots(api: Any, wme_server: WMEServer, token: str) -> None:
    got = api.get_snapshots()
    sent = served(wme_server, token, "snapshots")
    assert [s.identifier for s in got] == wme_server.snapshots
    for obj, item in zip(got, sent, strict=True):
        assert_parsed(obj, item)


def test_list_snapshots_filtered(api: Any) -> None:
    from modules.api.api_client import Filter, Request

    got = api.get_snapshots(Request(filters=[Filter("namespace.identifier", 10)]))
    assert [s.identifier for s in got] == ["elwikivoyage_namespace_10"]
    got = api.get_snapshots(Request(filters=[Filter("in_language.identifier", "en")],
                                    fields=["identifier", "chunks"]))
    assert [s.identifier for s in got] == [NS0]
    assert got[0].chunks and got[0].size is None  # only the fields asked for


def test_snapshot_info_describes_the_build(api: Any, wme_server: WMEServer, token: str
                                           ) -> None:
    manifest = _store(wme_server).manifest(NS0)
    got = api.get_snapshot(NS0)
    assert_parsed(got, served(wme_server, token, f"snapshots/{NS0}"))
    assert got.identifier == NS0 and got.version
    assert got.chunks == manifest.chunk_identifiers() and len(got.chunks) >= 3
    assert (got.is_part_of.identifier, got.in_language.identifier, got.namespace.identifier
            ) == ("enwiki", "en", 0)
    assert got.size.unit_text == "MB" and got.size.value > 0
    assert got.date_modified == manifest.date_modified
    # WME's version: the MD5 of the tar.gz the SDK downloads.
    data = raw_download(wme_server, token, f"snapshots/{NS0}/download").content
    assert is_wme_archive(data) and got.version == md5(data)
    assert got.size.value == round(len(data) / 1e6, 3)


def test_head_snapshot(api: Any, wme_server: WMEServer, token: str) -> None:
    head = api.head_snapshot(NS0)
    data = raw_download(wme_server, token, f"snapshots/{NS0}/download").content
    assert head["Content-Length"] == len(data) > 0
    assert head["Accept-Ranges"] == "bytes"
    assert head["ETag"] and head["Last-Modified"] and head["Content-Type"]


@pytest.mark.parametrize("part_size", [20 * 1024 * 1024, 100_000])
def test_download_snapshot(wme_server: WMEServer, token: str, sdk_path: Path,
                           part_size: int) -> None:
    """The SDK's default part size (one GET) and a small one (many parallel Range GETs)."""
    client = api_client(wme_server, token, download_chunk_size=part_size)
    try:
        out = io.BytesIO()
        client.download_snapshot(NS0, out)
    finally:
        client.http_client.close()
    data = out.getvalue()
    assert data == raw_download(wme_server, token, f"snapshots/{NS0}/download").content
    store = _store(wme_server)
    want = list(store.iter_lines(store.manifest(NS0)))
    assert [json.loads(line) for line in archive_lines(data)] == [json.loads(w) for w in want]


@pytest.mark.parametrize("identifier", [NS0, "elwikivoyage_namespace_10"])
def test_read_snapshot(api: Any, wme_server: WMEServer, token: str, identifier: str) -> None:
    data = raw_download(wme_server, token, f"snapshots/{identifier}/download").content
    assert is_wme_archive(data)
    got: list[Any] = []
    api.read_snapshot(identifier, lambda item: got.append(item) or True)
    store = _store(wme_server)
    built = [json.loads(line) for line in store.iter_lines(store.manifest(identifier))]
    assert [json.loads(line) for line in archive_lines(data)] == built
    assert len(got) == len(built) > 0
    # The SDK parses each article line with its Snapshot model (its own choice); what it
    # read must still be what was built.
    for obj, record in zip(got, built, strict=True):
        assert_parsed(obj, record)


def test_chunks(api: Any, wme_server: WMEServer, token: str) -> None:
    manifest = _store(wme_server).manifest(NS0)
    got = api.get_chunks(NS0)
    sent = served(wme_server, token, f"snapshots/{NS0}/chunks")
    assert [c.identifier for c in got] == manifest.chunk_identifiers()
    for obj, item in zip(got, sent, strict=True):
        assert_parsed(obj, item)
        assert obj.chunks == []  # chunk metadata has no chunks (WME)
        assert obj.size.unit_text == "MB"
    one = api.get_chunk(NS0, f"{NS0}_chunk_1")
    assert_parsed(one, served(wme_server, token, f"snapshots/{NS0}/chunks/{NS0}_chunk_1"))
    assert one.identifier == f"{NS0}_chunk_1"


def test_head_download_and_read_chunk(api: Any, wme_server: WMEServer, token: str) -> None:
    store = _store(wme_server)
    manifest = store.manifest(NS0)
    chunk = manifest.chunks[1]
    path = f"snapshots/{NS0}/chunks/{chunk.identifier}/download"
    data = raw_download(wme_server, token, path).content
    head = api.head_chunk(NS0, chunk.identifier)
    assert head["Content-Length"] == len(data) and head["Accept-Ranges"] == "bytes"
    out = io.BytesIO()
    api.download_chunk(NS0, chunk.identifier, out)
    assert out.getvalue() == data
    lines = archive_lines(data)
    assert len(lines) == chunk.article_count
    # WME's chunk_<k>.tar.gz, its MD5 the chunk metadata's version.
    assert is_wme_archive(data)
    assert api.get_chunk(NS0, chunk.identifier).version == md5(data)
    # The native format is a header away: the chunk's zstd file, checksum in the manifest.
    native = raw_download(wme_server, token, path, accept="application/zstd").content
    assert hashlib.sha256(native).hexdigest() == chunk.sha256
    assert archive_lines(native) == lines
    got: list[Any] = []
    api.read_chunk(NS0, chunk.identifier, lambda item: got.append(item) or True)
    built = [json.loads(line) for line in store.iter_lines(manifest)][
        sum(c.article_count for c in manifest.chunks[:chunk.index]):][:chunk.article_count]
    assert [json.loads(line) for line in lines] == built
    assert len(got) == len(built)
    for obj, record in zip(got, built, strict=True):
        assert_parsed(obj, record)
