"""The WME tar.gz representation of snapshot versions: built after sealing from the sealed
chunks (serially and in a worker pool, to the same bytes), recorded in the manifest, verified,
switched off by a setting, and refused when chunks could pass WME's entry limit."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import msgspec
import pytest

from feedserver.config import Settings, load_settings
from feedserver.errors import IntegrityError, InvalidParameter
from feedserver.feeds.snapshots.build import build_from_records, build_snapshots
from feedserver.feeds.snapshots.manifest import Manifest, WmeArchive, wme_archive
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.feeds.snapshots.wme import MAX_CHUNK_SIZE
from feedserver.formats.wme_layout import chunk_archive, read_range, snapshot_archive
from feedserver.storage.blobs import FilesystemBlobStore
from tests.conftest import DUMPS
from tests.unit.feeds.snapshots.test_build import INFO, article, redirect

ENWIKI = DUMPS / "gensim-4.4.0/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
ID = "testwiki_namespace_0"


def md5(data: bytes) -> str:
    """WME's checksum (its ``version``), not a security measure."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def make(tmp_path: Path, name: str = "var", **overrides: object
         ) -> tuple[Settings, FilesystemBlobStore]:
    settings = load_settings(env={}, data_dir=str(tmp_path / name), **overrides)
    return settings, FilesystemBlobStore(settings.blob_root)


def snapshot_bytes(blobs: FilesystemBlobStore, m: Manifest) -> bytes:
    parts = [c.wme.part for c in m.chunks if c.wme is not None]

    def read_part(index: int, start: int, stop: int) -> list[bytes]:
        chunk = m.chunks[index].wme
        assert chunk is not None
        return list(blobs.open_range(chunk.key, start, stop))

    return b"".join(read_range(snapshot_archive(m.identifier, parts), read_part))


def chunk_bytes(blobs: FilesystemBlobStore, m: Manifest, k: int) -> bytes:
    files = m.chunks[k].wme
    assert files is not None
    return b"".join(read_range(chunk_archive(k, files.part),
                               lambda _i, start, stop: blobs.open_range(files.key, start, stop)))


def tar_entries(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = []
        for member in tar:
            f = tar.extractfile(member)
            assert f is not None
            out.append((member.name, f.read()))
        return out


def test_build_records_the_wme_archive(tmp_path: Path) -> None:
    settings, blobs = make(tmp_path, chunk_size=2000)
    records = [article(i) for i in range(1, 30)] + [redirect("Alias", "Page 3")]
    [m] = build_from_records(INFO, records, blobs, settings)
    wme = wme_archive(m.representations)
    assert isinstance(wme, WmeArchive) and wme.level == 6 and wme.zlib_ng.startswith("zlib-ng")
    assert len(m.chunks) > 2
    store = SnapshotStore(blobs)
    store.verify(m)
    # The whole archive: one entry per chunk, named as WME names them, holding exactly the
    # zstd chunk's NDJSON (sealed: the redirect attached), with the recorded checksums.
    whole = snapshot_bytes(blobs, m)
    assert wme.archive.size == len(whole)
    assert wme.archive.md5 == md5(whole)
    assert wme.archive.sha256 == hashlib.sha256(whole).hexdigest()
    entries = tar_entries(whole)
    assert [name for name, _ in entries] == [f"{ID}_{k}.ndjson" for k in range(len(m.chunks))]
    lines = b"".join(data for _, data in entries).splitlines()
    assert lines == list(store.iter_lines(m))
    assert b'"redirects":[{"name":"Alias"' in b"".join(lines)
    for k, chunk in enumerate(m.chunks):
        assert chunk.wme is not None and chunk.wme.key.endswith(f"/1/wme/part_{k}.gz")
        data = chunk_bytes(blobs, m, k)
        assert chunk.wme.archive.md5 == md5(data)  # WME's chunk version
        assert chunk.wme.archive.size == len(data)
        assert tar_entries(data) == [(f"chunk_{k}.ndjson", entries[k][1])]
        assert chunk.wme.part.data_size == chunk.uncompressed_size
        assert chunk.wme.part.lines == chunk.article_count


def test_setting_off_builds_zstd_only(tmp_path: Path) -> None:
    settings, blobs = make(tmp_path, chunk_size=2000, wme_archives=False)
    [m] = build_from_records(INFO, [article(i) for i in range(1, 10)], blobs, settings)
    assert m.representations == [] and all(c.wme is None for c in m.chunks)
    assert not [k for k in blobs.list("snapshots/") if "/wme/" in k]
    SnapshotStore(blobs).verify(m)


def test_old_manifests_without_the_field_still_read(tmp_path: Path) -> None:
    settings, blobs = make(tmp_path, chunk_size=2000, wme_archives=False)
    [m] = build_from_records(INFO, [article(1)], blobs, settings)
    raw = msgspec.to_builtins(m)
    raw.pop("representations")
    for chunk in raw["chunks"]:
        chunk.pop("wme")
    assert msgspec.convert(raw, Manifest, strict=False) == m


def test_chunk_size_must_fit_the_entry_limit(tmp_path: Path) -> None:
    settings, blobs = make(tmp_path, chunk_size=MAX_CHUNK_SIZE + 1)
    with pytest.raises(InvalidParameter, match="entry limit"):
        build_from_records(INFO, [article(1)], blobs, settings)
    off = msgspec.structs.replace(settings, wme_archives=False)
    assert build_from_records(INFO, [article(1)], blobs, off)  # no WME format, no limit
    with pytest.raises(InvalidParameter, match=r"0\.\.9"):
        build_from_records(INFO, [article(1)], blobs,
                           msgspec.structs.replace(settings, chunk_size=2000,
                                                   wme_gzip_level=10))


def test_verify_finds_a_damaged_part(tmp_path: Path) -> None:
    settings, blobs = make(tmp_path, chunk_size=2000)
    [m] = build_from_records(INFO, [article(i) for i in range(1, 20)], blobs, settings)
    files = m.chunks[1].wme
    assert files is not None
    path = blobs.root / files.key
    good = path.read_bytes()
    store = SnapshotStore(blobs)
    # A part re-deflated from other NDJSON (same size, valid gzip) and a flipped byte.
    import zlib

    other = zlib.compressobj(6, zlib.DEFLATED, 31)
    data = other.compress(b"x" * files.part.data_size + bytes(-files.part.data_size % 512))
    for bad in (good[:-30] + bytes(30), data + other.flush(), good[:100]):
        path.write_bytes(bad)
        with pytest.raises(IntegrityError, match=r"WME part|gzip|truncated"):
            store.verify(m)
    path.write_bytes(good)
    store.verify(m)


@pytest.mark.usefixtures("shared_data")
def test_pool_writes_the_same_parts_as_one_process(tmp_path: Path) -> None:
    """Real dump, several chunks: parts deflated in worker processes then hashed in order give
    the same manifests (checksums and all) as the serial path."""
    s1, b1 = make(tmp_path, "one", chunk_size=256 * 1024)
    s2, b2 = make(tmp_path, "two", chunk_size=256 * 1024)
    [serial] = build_snapshots([ENWIKI, ENWIKI], b1, s1, workers=1)
    [parallel] = build_snapshots([ENWIKI, ENWIKI], b2, s2, workers=2)
    assert len(serial.chunks) > 2
    assert serial.representations == parallel.representations
    assert [c.wme for c in serial.chunks] == [c.wme for c in parallel.chunks]
    SnapshotStore(b2).verify(parallel)
