"""WME's tar.gz at WME paths: the default download of snapshots and chunks, byte-stable and
matching the checksums in the metadata, with zstd NDJSON a request away (``Accept`` or
``?format=``), each representation with its own ETag, Ranges, If-Range and resume."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.feeds.snapshots.manifest import Manifest, WmeArchive
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.formats.gzip_pieces import HEADER
from feedserver.formats.wme_tar import ENTRY_HEADER_SIZE, TAIL_SIZE
from feedserver.metering.records import UsageSink
from tests.fixtures.usage import RecordingSink
from tests.unit.api.conftest import World, build_world
from tests.unit.api.test_snapshots import unzstd

EN = "enwiki_namespace_0"
DL = f"/v2/snapshots/{EN}/download"


def md5(data: bytes) -> str:
    """WME's checksum (its ``version``), not a security measure."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def wme(m: Manifest) -> WmeArchive:
    rep = m.representations[0]
    assert isinstance(rep, WmeArchive)
    return rep


def entries(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return [(m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
                for m in tar.getmembers()]


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def client(world: World, sink: RecordingSink) -> Iterator[TestClient[Any]]:
    usage: UsageSink = sink  # type: ignore[assignment]
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=CollectorRegistry(), usage=usage)
    with TestClient(app) as c:
        yield c


def get(client: TestClient[Any], world: World, path: str = DL, **headers: str) -> Any:
    return client.get(path, headers=world.headers(world.key_a, **headers))


def test_snapshot_download_is_wme_tar_gz_by_default(client: TestClient[Any], world: World,
                                                    sink: RecordingSink) -> None:
    m = world.manifests[EN]
    meta = get(client, world, f"/v2/snapshots/{EN}").json()
    r = get(client, world)
    assert r.status_code == 200
    data = r.content
    assert r.headers["content-type"] == "application/gzip"
    assert r.headers["content-disposition"] == f'attachment; filename="{EN}.tar.gz"'
    assert r.headers["vary"] == "Accept" and r.headers["accept-ranges"] == "bytes"
    # Checksums in the metadata, known before any download: WME's version is the MD5.
    assert meta["version"] == md5(data) == wme(m).archive.md5
    assert meta["size_bytes"] == len(data) == int(r.headers["content-length"])
    assert r.headers["etag"] == f'"sha256:{hashlib.sha256(data).hexdigest()}"'
    # One entry per chunk, named as WME names them, holding the records that were built.
    got = entries(data)
    assert [name for name, _ in got] == [f"{EN}_{k}.ndjson" for k in range(len(m.chunks))]
    lines = b"".join(body for _, body in got).splitlines()
    assert lines == list(SnapshotStore(world.blobs).iter_lines(m))
    # Byte-stable: the same bytes on every request.
    assert get(client, world).content == data
    # Metering bills the bytes of the representation sent.
    assert [x["bytes_sent"] for x in sink.records if x.get("download")] == [len(data)] * 2


def test_chunk_download_is_chunk_tar_gz(client: TestClient[Any], world: World) -> None:
    m = world.manifests[EN]
    for k, chunk in enumerate(m.chunks):
        base = f"/v2/snapshots/{EN}/chunks/{chunk.identifier}"
        meta = get(client, world, base).json()
        r = get(client, world, f"{base}/download")
        assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
        assert r.headers["content-disposition"] == f'attachment; filename="chunk_{k}.tar.gz"'
        assert meta["version"] == md5(r.content)  # WME: MD5 of the tar.gz
        assert meta["size_bytes"] == len(r.content)
        [(name, body)] = entries(r.content)
        assert name == f"chunk_{k}.ndjson"
        zstd = get(client, world, f"{base}/download", Accept="application/zstd").content
        assert body == unzstd(zstd)


@pytest.mark.parametrize(("accept", "query", "want"), [
    (None, "", "application/gzip"),
    ("*/*", "", "application/gzip"),
    ("application/zstd", "", "application/zstd"),
    ("application/gzip", "", "application/gzip"),
    ("application/x-gzip", "", "application/gzip"),
    ("application/gzip;q=0.5, application/zstd;q=0.9", "", "application/zstd"),
    ("application/zstd, application/gzip", "", "application/gzip"),  # a tie: the default
    ("application/zstd, */*;q=0.1", "", "application/zstd"),
    ("application/gzip;q=0, */*", "", "application/zstd"),
    ("text/html", "", "application/gzip"),  # nothing acceptable: the default (RFC 9110)
    ("application/zstd", "?format=tar.gz", "application/gzip"),  # the parameter wins
    (None, "?format=zstd", "application/zstd"),
])
def test_negotiation(client: TestClient[Any], world: World, accept: str | None, query: str,
                     want: str) -> None:
    headers = {"Accept": accept} if accept else {}
    for method in ("HEAD", "GET"):
        r = client.request(method, DL + query, headers=world.headers(world.key_a, **headers))
        assert r.status_code == 200 and r.headers["content-type"] == want


def test_unknown_format_is_422(client: TestClient[Any], world: World) -> None:
    r = get(client, world, DL + "?format=parquet")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")


def test_each_representation_has_its_own_etag(client: TestClient[Any], world: World) -> None:
    m = world.manifests[EN]
    gz_etag = f'"sha256:{wme(m).archive.sha256}"'
    zst_etag = f'"sha256:{m.sha256}"'
    assert get(client, world).headers["etag"] == gz_etag
    assert get(client, world, Accept="application/zstd").headers["etag"] == zst_etag
    # If-None-Match of one representation does not match the other.
    assert get(client, world, **{"If-None-Match": gz_etag}).status_code == 304
    assert get(client, world, **{"If-None-Match": zst_etag}).status_code == 200
    r = get(client, world, Accept="application/zstd", **{"If-None-Match": zst_etag})
    assert r.status_code == 304 and r.headers["vary"] == "Accept"
    # If-Range with the other representation's ETag: the whole (tar.gz) body, not a range
    # of bytes the client's earlier part does not continue.
    r = get(client, world, Range="bytes=0-9", **{"If-Range": zst_etag})
    assert r.status_code == 200 and len(r.content) == wme(m).archive.size
    r = get(client, world, Range="bytes=0-9", **{"If-Range": gz_etag})
    assert r.status_code == 206 and len(r.content) == 10


def boundaries(world: World) -> list[int]:
    """Offsets of every piece of the tar.gz: headers (rebuilt), parts (stored), end blocks."""
    m = world.manifests[EN]
    out, offset = [0], len(HEADER)
    for chunk in m.chunks:
        assert chunk.wme is not None
        out += [offset, offset + ENTRY_HEADER_SIZE]
        offset += ENTRY_HEADER_SIZE + chunk.wme.part.checksums.size
    return [*out, offset, offset + TAIL_SIZE]


def test_ranges_across_rebuilt_and_stored_pieces(client: TestClient[Any], world: World
                                                 ) -> None:
    whole = get(client, world).content
    size = len(whole)
    assert boundaries(world)[-1] == size
    for edge in boundaries(world)[1:-1]:
        start, stop = max(0, edge - 7), min(size, edge + 7)
        r = get(client, world, Range=f"bytes={start}-{stop - 1}")
        assert r.status_code == 206 and r.content == whole[start:stop], edge
        assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
        assert r.headers["content-type"] == "application/gzip"
    r = get(client, world, Range="bytes=-1100")  # the end-of-archive block, trailer and more
    assert r.status_code == 206 and r.content == whole[-1100:]
    edges = boundaries(world)
    spec = ", ".join(f"{e}-{e + 3}" for e in edges[1:6])
    r = get(client, world, Range=f"bytes={spec}")
    assert r.status_code == 206
    ctype = r.headers["content-type"]
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + r.content)
    parts = list(msg.iter_parts())
    assert [p["Content-Type"] for p in parts] == ["application/gzip"] * 5
    assert [p.get_payload(decode=True) for p in parts] == [whole[e:e + 4] for e in edges[1:6]]
    r = get(client, world, Range=f"bytes={size}-")
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("accept", [None, "application/zstd"])
def test_resume(client: TestClient[Any], world: World, accept: str | None) -> None:
    """A download cut in the middle resumes where it stopped, on either representation."""
    extra = {"Accept": accept} if accept else {}
    whole = get(client, world, **extra)
    data, etag = whole.content, whole.headers["etag"]
    cut = len(data) // 3
    first = get(client, world, Range=f"bytes=0-{cut - 1}", **extra)
    rest = get(client, world, Range=f"bytes={cut}-", **{"If-Range": etag, **extra})
    assert rest.status_code == 206
    assert first.content + rest.content == data


@pytest.fixture(scope="module")
def zstd_only(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("zstd-only"), wme_archives=False)


def test_versions_built_without_it_serve_zstd(zstd_only: World) -> None:
    world = zstd_only
    m = world.manifests[EN]
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        r = get(c, world)
        assert r.status_code == 200 and r.headers["content-type"] == "application/zstd"
        assert hashlib.sha256(r.content).hexdigest() == m.sha256
        meta = get(c, world, f"/v2/snapshots/{EN}").json()
        assert meta["version"] == m.content_root_hash and meta["sha256"] == m.sha256
        assert [f["format"] for f in meta["formats"]] == ["zstd"]
        r = get(c, world, DL + "?format=tar.gz")
        assert r.status_code == 406 and "tar.gz" in r.json()["detail"]
        r = get(c, world, f"/v2/snapshots/{EN}/chunks/0/download?format=tar.gz")
        assert r.status_code == 406
