from __future__ import annotations

import hashlib
import io
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import msgspec
import zstandard
from litestar.testing import TestClient

from tests.unit.api.conftest import World

EN = "enwiki_namespace_0"


def unzstd(data: bytes) -> bytes:
    """All frames (each chunk file is its own zstd frame)."""
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                    read_across_frames=True) as reader:
        return reader.read()

DL = f"/v2/snapshots/{EN}/download"
# These tests exercise the native format (zstd NDJSON), asked for as a client does; the WME
# tar.gz default is tested in test_wme_downloads.py.
ZSTD = {"Accept": "application/zstd"}


def full(client: TestClient[Any], world: World, path: str = DL, **headers: str) -> Any:
    return client.get(path, headers=world.headers(world.key_a, **{**ZSTD, **headers}))


def test_list_only_entitled(client: TestClient[Any], world: World) -> None:
    r = client.get("/v2/snapshots", headers=world.headers(world.key_a))
    assert r.status_code == 200
    assert [s["identifier"] for s in r.json()] == [EN, "enwiki_namespace_10"]
    r = client.post("/v2/snapshots", headers=world.headers(world.key_b), json={})
    assert [s["identifier"] for s in r.json()] == ["dewiki_namespace_0"]
    r = client.get("/v2/snapshots", headers=world.headers(world.key_none))
    assert r.status_code == 200 and r.json() == []


def test_list_filters_fields_and_ndjson(client: TestClient[Any], world: World) -> None:
    body = {"filters": [{"field": "namespace.identifier", "value": 10}],
            "fields": ["identifier", "namespace.*", "size.unit_text"]}
    r = client.post("/v2/snapshots", headers=world.headers(world.key_a), json=body)
    assert r.json() == [{"identifier": "enwiki_namespace_10", "namespace": {"identifier": 10},
                         "size": {"unit_text": "MB"}}]
    r = client.get("/v2/snapshots", headers=world.headers(
        world.key_a, Accept="application/x-ndjson"),
        params={"fields": "identifier", "filters": '[{"field":"in_language.identifier",'
                                                   '"value":"en"}]'})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert r.text.splitlines() == ['{"identifier":"enwiki_namespace_0"}',
                                   '{"identifier":"enwiki_namespace_10"}']


def test_metadata_object(client: TestClient[Any], world: World) -> None:
    m = world.manifests[EN]
    r = client.get(f"/v2/snapshots/{EN}", headers=world.headers(world.key_a))
    assert r.status_code == 200
    data = r.json()
    assert data["identifier"] == EN
    wme = m.representations[0].archive  # the default download: WME's tar.gz
    assert data["version"] == wme.md5  # as WME: the MD5 of the tar.gz
    assert data["content_root_hash"] == m.content_root_hash
    assert data["version_number"] == 1
    assert data["is_part_of"] == {"identifier": "enwiki"}
    assert data["in_language"] == {"identifier": "en"}
    assert data["namespace"] == {"identifier": 0}
    assert data["size"] == {"value": round(wme.size / 1e6, 3), "unit_text": "MB"}
    assert data["size_bytes"] == wme.size
    assert data["chunks"] == [f"{EN}_chunk_{k}" for k in range(len(m.chunks))]
    assert data["sha256"] == wme.sha256
    assert data["formats"] == [
        {"format": "tar.gz", "media_type": "application/gzip", "size_bytes": wme.size,
         "sha256": wme.sha256, "md5": wme.md5},
        {"format": "zstd", "media_type": "application/zstd", "size_bytes": m.size.value,
         "sha256": m.sha256}]
    assert "key" not in str(data)  # storage keys never leak


def test_versions(client: TestClient[Any], world: World) -> None:
    h = world.headers(world.key_b)
    cur = client.get("/v2/snapshots/dewiki_namespace_0", headers=h).json()
    old = client.get("/v2/snapshots/dewiki_namespace_0?version=1", headers=h).json()
    assert (cur["version_number"], old["version_number"]) == (2, 1)
    assert cur["versions"] == [1, 2]
    assert cur["previous_version"] == 1 and cur["version"] != old["version"]
    r = client.get("/v2/snapshots/dewiki_namespace_0?version=7", headers=h)
    assert r.status_code == 404
    r = client.get("/v2/snapshots/dewiki_namespace_0?version=x", headers=h)
    assert r.status_code == 422


def test_download_whole(client: TestClient[Any], world: World) -> None:
    m = world.manifests[EN]
    r = full(client, world)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zstd"
    assert r.headers["etag"] == f'"sha256:{m.sha256}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert int(r.headers["content-length"]) == m.size.value == len(r.content)
    assert "last-modified" in r.headers and "repr-digest" in r.headers
    assert r.headers["content-disposition"] == f'attachment; filename="{EN}_v1.ndjson.zst"'
    assert hashlib.sha256(r.content).hexdigest() == m.sha256
    lines = unzstd(r.content).splitlines()
    assert len(lines) == m.article_count == 40
    assert len(m.chunks) > 1  # several chunks concatenated


def test_head(client: TestClient[Any], world: World) -> None:
    m = world.manifests[EN]
    r = client.head(DL, headers=world.headers(world.key_a, **ZSTD))
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == m.size.value
    assert r.headers["etag"] == f'"sha256:{m.sha256}"'


def test_single_range_across_chunks(client: TestClient[Any], world: World) -> None:
    whole = full(client, world).content
    c0 = world.manifests[EN].chunks[0].size
    r = full(client, world, Range=f"bytes={c0 - 5}-{c0 + 4}")
    assert r.status_code == 206
    assert r.content == whole[c0 - 5:c0 + 5]
    assert r.headers["content-range"] == f"bytes {c0 - 5}-{c0 + 4}/{len(whole)}"
    r = full(client, world, Range="bytes=-7")
    assert r.status_code == 206 and r.content == whole[-7:]


def test_multi_range(client: TestClient[Any], world: World) -> None:
    whole = full(client, world).content
    r = full(client, world, Range="bytes=0-3, 100-199, 1000-")
    assert r.status_code == 206
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/byteranges; boundary=")
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + r.content)
    parts = list(msg.iter_parts())
    assert [p["Content-Range"] for p in parts] == [
        f"bytes 0-3/{len(whole)}", f"bytes 100-199/{len(whole)}",
        f"bytes 1000-{len(whole) - 1}/{len(whole)}"]
    assert [p.get_payload(decode=True) for p in parts] == [
        whole[:4], whole[100:200], whole[1000:]]
    assert int(r.headers["content-length"]) == len(r.content)


def test_unsatisfiable_and_malformed(client: TestClient[Any], world: World) -> None:
    size = int(world.manifests[EN].size.value)
    r = full(client, world, Range=f"bytes={size}-")
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    assert r.headers["content-type"] == "application/problem+json"
    # a start of any length past the end: 416 too, not the whole body served and billed
    r = full(client, world, Range="bytes=" + "9" * 30 + "-")
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    r = full(client, world, Range="bytes=oops")
    assert r.status_code == 200 and len(r.content) == size
    r = full(client, world, Range="bytes=" + ",".join(["0-0"] * 50))
    assert r.status_code == 400


def test_conditional(client: TestClient[Any], world: World) -> None:
    m = world.manifests[EN]
    etag = f'"sha256:{m.sha256}"'
    r = full(client, world, **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = full(client, world, **{"If-Range": etag, "Range": "bytes=0-0"})
    assert r.status_code == 206 and len(r.content) == 1
    r = full(client, world, **{"If-Range": '"sha256:stale"', "Range": "bytes=0-0"})
    assert r.status_code == 200 and len(r.content) == m.size.value


def test_chunks(client: TestClient[Any], world: World) -> None:
    m = world.manifests[EN]
    base = f"/v2/snapshots/{EN}/chunks"
    r = client.get(base, headers=world.headers(world.key_a))
    assert [c["identifier"] for c in r.json()] == m.chunk_identifiers()
    c1 = m.chunks[1]
    by_index = client.get(f"{base}/1", headers=world.headers(world.key_a)).json()
    by_id = client.post(f"{base}/{c1.identifier}", headers=world.headers(world.key_a),
                        json={"fields": ["identifier", "offset"]}).json()
    assert by_index["identifier"] == c1.identifier and by_index["offset"] == c1.offset
    assert by_id == {"identifier": c1.identifier, "offset": c1.offset}
    assert by_index["formats"][1] == {"format": "zstd", "media_type": "application/zstd",
                                      "size_bytes": c1.size, "sha256": c1.sha256}
    r = client.get(f"{base}/1/download?format=zstd", headers=world.headers(world.key_a))
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == c1.sha256
    assert r.headers["etag"] == f'"sha256:{c1.sha256}"'
    r = client.get(f"{base}/{c1.identifier}/download",
                   headers=world.headers(world.key_a, Range="bytes=2-5", **ZSTD))
    whole = full(client, world).content
    assert r.status_code == 206 and r.content == whole[c1.offset + 2:c1.offset + 6]
    assert client.get(f"{base}/99", headers=world.headers(world.key_a)).status_code == 404
    other = f"{base}/enwiki_namespace_10_chunk_0"
    assert client.get(other, headers=world.headers(world.key_a)).status_code == 404


def test_articles_in_download_match_builder(client: TestClient[Any], world: World) -> None:
    from feedserver.feeds.snapshots.store import SnapshotStore

    whole = full(client, world).content
    lines = unzstd(whole).splitlines()
    store = SnapshotStore(world.blobs)
    want = [msgspec.json.encode(a) for a in store.iter_articles(world.manifests[EN])]
    assert [msgspec.json.encode(msgspec.json.decode(line)) for line in lines] == [
        msgspec.json.encode(msgspec.json.decode(w)) for w in want]
