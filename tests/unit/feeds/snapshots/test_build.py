"""Snapshot builder and reader on synthetic records: chunks, hashes, redirects, dedupe,
atomic publish, retention, locking and the reader's validation."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import zstandard

from feedserver.config import Settings, load_settings
from feedserver.errors import Conflict, IntegrityError, InvalidIdentifier, SnapshotNotFound
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.chunks import iter_lines
from feedserver.feeds.snapshots.publish import build_lock
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.formats.hashing import article_hash, root_hash
from feedserver.ingest.dump import DumpInfo
from feedserver.models import (
    Article,
    ArticleBody,
    Link,
    Namespace,
    Project,
    Redirect,
    Version,
)
from feedserver.storage.blobs import FilesystemBlobStore

INFO = DumpInfo(wiki="testwiki", site_name="Test", base_url="https://test.example",
                language="en", namespaces={0: "", 10: "Template"}, schema_version="0.11",
                source="synthetic.xml")


def article(i: int, *, ns: int = 0, rev: int = 1, text: str = "") -> Article:
    name = f"Page {i}" if ns == 0 else f"Template:Page {i}"
    return Article(
        name=name, identifier=i, namespace=Namespace(identifier=ns),
        is_part_of=Project(identifier="testwiki"), version=Version(identifier=rev),
        article_body=ArticleBody(wikitext=text or f"text of page {i} " * 20),
    )


def redirect(name: str, target: str) -> Redirect:
    return Redirect(name=name, namespace=0, target=target, url=f"https://test.example/{name}")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=2000,
                         retention_versions=3)


@pytest.fixture
def blobs(settings: Settings) -> FilesystemBlobStore:
    return FilesystemBlobStore(settings.blob_root)


def unzstd(data: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    return reader.readall()


def build(records: list[Article | Redirect], blobs: FilesystemBlobStore,
          settings: Settings) -> dict[str, object]:
    return {m.identifier: m for m in build_from_records(INFO, iter(records), blobs, settings)}


def test_build_round_trips_records_and_hashes(blobs: FilesystemBlobStore,
                                              settings: Settings) -> None:
    records: list[Article | Redirect] = [article(i) for i in range(1, 41)]
    records += [article(i, ns=10) for i in range(100, 105)]
    manifests = build_from_records(INFO, iter(records), blobs, settings)
    assert [m.identifier for m in manifests] == ["testwiki_namespace_0", "testwiki_namespace_10"]
    store = SnapshotStore(blobs)
    m = store.manifest("testwiki_namespace_0")
    assert m.version == 1 and m.previous_version is None
    assert m.article_count == 40 == sum(c.article_count for c in m.chunks)
    assert len(m.chunks) > 3  # rolled at chunk_size
    assert m.chunk_identifiers()[0] == "testwiki_namespace_0_chunk_0"
    assert [c.index for c in m.chunks] == list(range(len(m.chunks)))
    assert m.is_part_of.identifier == "testwiki" and m.namespace.identifier == 0
    assert m.source.dumps == ["synthetic.xml"]
    store.verify(m)
    got = list(store.iter_articles(m))
    assert got == records[:40]
    # Each chunk is one zstd frame and the chunks back to back are the whole download.
    whole = b"".join(blobs.get_bytes(c.key) for c in m.chunks)
    assert hashlib.sha256(whole).hexdigest() == m.sha256 and len(whole) == m.size.value
    for c in m.chunks:
        assert whole[c.offset:c.offset + c.size] == blobs.get_bytes(c.key)
    lines = unzstd(whole).splitlines()
    assert list(iter_lines([whole[i:i + 100] for i in range(0, len(whole), 100)])) == lines
    for c in m.chunks:  # and each chunk is a complete .zst file of its own
        assert len(unzstd(blobs.get_bytes(c.key)).splitlines()) == c.article_count
    assert lines == [msgspec.json.encode(a) for a in records[:40]]
    assert m.content_root_hash == root_hash(article_hash(line) for line in reversed(lines))
    assert m.uncompressed_size == sum(len(line) + 1 for line in lines)
    assert store.identifiers() == ["testwiki_namespace_0", "testwiki_namespace_10"]
    assert store.manifest("testwiki_namespace_10").namespace.name == "Template"


def test_redirects_attached_before_and_after_target(blobs: FilesystemBlobStore,
                                                    settings: Settings) -> None:
    records: list[Article | Redirect] = [
        redirect("Early", "Page 3"),
        *[article(i) for i in range(1, 11)],
        redirect("Late", "Page 3"),
        redirect("Other", "Page 9"),
        redirect("Nowhere", "Missing page"),
    ]
    m = build_from_records(INFO, iter(records), blobs, settings)[0]
    assert m.redirect_count == 3 and m.redirects_dropped == 1
    store = SnapshotStore(blobs)
    store.verify(m)
    by_id = {a.identifier: a for a in store.iter_articles(m)}
    assert by_id[3].redirects == [Link(name="Early", url="https://test.example/Early"),
                                  Link(name="Late", url="https://test.example/Late")]
    assert by_id[9].redirects == [Link(name="Other", url="https://test.example/Other")]
    assert by_id[1].redirects is None
    assert m.article_count == 10


def test_duplicate_page_ids_keep_highest_revision(blobs: FilesystemBlobStore,
                                                  settings: Settings) -> None:
    records: list[Article | Redirect] = [article(1, rev=5), article(2, rev=1),
                                         article(1, rev=3), article(2, rev=9), article(3)]
    m = build_from_records(INFO, iter(records), blobs, settings)[0]
    store = SnapshotStore(blobs)
    store.verify(m)
    got = {a.identifier: a.version.identifier for a in store.iter_articles(m) if a.version}
    assert got == {1: 5, 2: 9, 3: 1}
    assert m.article_count == 3


def _failing(n: int, exc: BaseException) -> Iterator[Article | Redirect]:
    for i in range(1, n + 1):
        yield article(i, rev=2)
    raise exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_crash_mid_build_publishes_nothing(blobs: FilesystemBlobStore, settings: Settings,
                                           exc: BaseException) -> None:
    first = build([article(i) for i in range(1, 6)], blobs, settings)
    before = sorted(blobs.list("snapshots/"))
    with pytest.raises(type(exc)):
        build_from_records(INFO, _failing(30, exc), blobs, settings)
    store = SnapshotStore(blobs)
    assert store.versions("testwiki_namespace_0") == [1]
    assert store.manifest("testwiki_namespace_0") == first["testwiki_namespace_0"]
    assert sorted(blobs.list("snapshots/")) == before
    assert not any((settings.data_path / "tmp").iterdir())  # scratch removed


def test_leftover_unpublished_version_is_cleaned(blobs: FilesystemBlobStore,
                                                 settings: Settings) -> None:
    build([article(1)], blobs, settings)
    # What a crash during upload leaves: chunks of version 2 without a pointer to them.
    blobs.put_bytes("snapshots/testwiki_namespace_0/2/testwiki_namespace_0_chunk_0.ndjson.zst",
                    b"partial")
    blobs.put_bytes("snapshots/testwiki_namespace_0/7/manifest.json", b"{}")
    store = SnapshotStore(blobs)
    assert store.versions("testwiki_namespace_0") == [1]
    with pytest.raises(SnapshotNotFound):
        store.manifest("testwiki_namespace_0", 2)
    m = build([article(1), article(2)], blobs, settings)["testwiki_namespace_0"]
    assert m.version == 2 and m.previous_version == 1  # type: ignore[attr-defined]
    store.verify(store.manifest("testwiki_namespace_0"))
    assert not list(blobs.list("snapshots/testwiki_namespace_0/7/"))


def test_retention_deletes_oldest(blobs: FilesystemBlobStore, settings: Settings) -> None:
    for n in range(1, 6):
        build([article(i) for i in range(1, n + 1)], blobs, settings)
    store = SnapshotStore(blobs)
    assert store.versions("testwiki_namespace_0") == [3, 4, 5]
    assert store.manifest("testwiki_namespace_0").article_count == 5
    assert not list(blobs.list("snapshots/testwiki_namespace_0/1/"))
    assert not list(blobs.list("snapshots/testwiki_namespace_0/2/"))
    with pytest.raises(SnapshotNotFound):
        store.manifest("testwiki_namespace_0", 1)
    assert store.manifest("testwiki_namespace_0", 3).article_count == 3


def test_concurrent_build_fails_clearly(blobs: FilesystemBlobStore, settings: Settings) -> None:
    lock = build_lock(settings.data_path / "locks", "testwiki_namespace_0")
    with lock, pytest.raises(Conflict, match="another build"):
        build([article(1)], blobs, settings)
    assert build([article(1)], blobs, settings)


def test_verify_detects_tampering(blobs: FilesystemBlobStore, settings: Settings) -> None:
    m = build_from_records(INFO, iter([article(i) for i in range(1, 20)]), blobs, settings)[0]
    store = SnapshotStore(blobs)
    key = m.chunks[1].key
    original = blobs.get_bytes(key)
    text = unzstd(original).replace(b"text of page", b"TEXT OF PAGE")
    blobs.put_bytes(key, zstandard.ZstdCompressor().compress(text))
    with pytest.raises(IntegrityError):
        store.verify(m)
    # A forger who also rewrites every byte checksum is still caught by the content root hash.
    chunks, offset, whole = [], 0, hashlib.sha256()
    for c in m.chunks:
        data = blobs.get_bytes(c.key)
        whole.update(data)
        chunks.append(msgspec.structs.replace(c, sha256=hashlib.sha256(data).hexdigest(),
                                              size=len(data), offset=offset))
        offset += len(data)
    forged = msgspec.structs.replace(m, chunks=chunks, sha256=whole.hexdigest(),
                                     size=msgspec.structs.replace(m.size, value=offset))
    with pytest.raises(IntegrityError, match="root hash"):
        store.verify(forged)


@pytest.mark.parametrize("bad", ["../x", "testwiki_namespace_0/../../etc", "a b", ""])
def test_reader_rejects_hostile_identifiers(blobs: FilesystemBlobStore, bad: str) -> None:
    store = SnapshotStore(blobs)
    with pytest.raises(InvalidIdentifier):
        store.manifest(bad)
    with pytest.raises(InvalidIdentifier):
        store.versions(bad)


def test_reader_not_found(blobs: FilesystemBlobStore, settings: Settings) -> None:
    store = SnapshotStore(blobs)
    assert store.identifiers() == []
    with pytest.raises(SnapshotNotFound):
        store.manifest("nowiki_namespace_0")
    build([article(1)], blobs, settings)
    with pytest.raises(SnapshotNotFound):
        store.manifest("testwiki_namespace_0", 9)
