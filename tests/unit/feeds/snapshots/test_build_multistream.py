"""Parallel builds: one multistream file split over workers, several files over workers."""

from __future__ import annotations

from pathlib import Path

from feedserver.config import Settings, load_settings
from feedserver.feeds.snapshots.build import build_snapshots
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.storage.blobs import FilesystemBlobStore
from tests.unit.ingest.test_multistream import write_multistream


def make(tmp_path: Path, name: str) -> tuple[Settings, FilesystemBlobStore]:
    settings = load_settings(env={}, data_dir=str(tmp_path / name), chunk_size=64 * 1024)
    return settings, FilesystemBlobStore(settings.blob_root)


def test_multistream_file_built_by_two_workers_equals_one(tmp_path: Path) -> None:
    dump = write_multistream(tmp_path / "demo-multistream.xml.bz2", 300)
    s1, b1 = make(tmp_path, "one")
    s2, b2 = make(tmp_path, "two")
    serial = build_snapshots([dump], b1, s1, workers=1)
    parallel = build_snapshots([dump], b2, s2, workers=2)
    assert [m.identifier for m in serial] == [m.identifier for m in parallel]
    for one, two in zip(serial, parallel, strict=True):
        assert one.content_root_hash == two.content_root_hash
        assert one.article_count == two.article_count
        assert one.redirect_count == two.redirect_count
        assert two.source is not None and two.source.dumps == [dump.name]
        SnapshotStore(b2).verify(two)
    # Records come out in file order either way: the downloads are byte-identical.
    lines1 = [x for m in serial for x in SnapshotStore(b1).iter_lines(m)]
    lines2 = [x for m in parallel for x in SnapshotStore(b2).iter_lines(m)]
    assert lines1 == lines2


def test_duplicates_and_redirects_sealed_in_the_pool_equal_serial(tmp_path: Path) -> None:
    # The same pages twice: every chunk of the first copy loses all its lines as superseded
    # duplicates, and those of the second gain redirects; both rewrites run in the pool.
    first = write_multistream(tmp_path / "a-multistream.xml.bz2", 120)
    second = write_multistream(tmp_path / "b-multistream.xml.bz2", 120)
    s1, b1 = make(tmp_path, "one")
    s2, b2 = make(tmp_path, "two")
    serial = build_snapshots([first, second], b1, s1, workers=1)
    parallel = build_snapshots([first, second], b2, s2, workers=2)
    for one, two in zip(serial, parallel, strict=True):
        assert (one.content_root_hash, one.article_count, one.redirect_count) == (
            two.content_root_hash, two.article_count, two.redirect_count)
        SnapshotStore(b2).verify(two)
    lines1 = [x for m in serial for x in SnapshotStore(b1).iter_lines(m)]
    lines2 = [x for m in parallel for x in SnapshotStore(b2).iter_lines(m)]
    assert lines1 == lines2
    assert (serial[0].article_count, serial[0].redirect_count) == (120, 24)
