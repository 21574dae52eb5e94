"""The manifest cache: bounded by bytes, least recently used out first; and the snapshot
reader's use of it on a filesystem store (the same life cycle runs on moto in
tests/integration/storage/test_manifest_cache_s3.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from feedserver.config import Settings, load_settings
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.feeds.snapshots.manifest_cache import ManifestCache
from feedserver.storage.blobs import FilesystemBlobStore
from tests.fixtures.manifest_cache import SNAP, check_manifest_cache, check_old_pointer


class CountingStore(FilesystemBlobStore):
    """A real filesystem store that remembers what ``get_bytes`` read (what S3 would be
    asked for)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def get_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get_bytes(key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=4000,
                         retention_versions=2, wme_archives=False)


def _manifest(version: int) -> Manifest:
    # Only the fields the cache cares about differ; the rest is a valid minimal manifest.
    return msgspec.convert({
        "identifier": SNAP, "version": version, "date_modified": "2024-01-01T00:00:00Z",
        "is_part_of": {"identifier": "enwiki"}, "namespace": {"identifier": 0},
        "article_count": 0, "size": {"value": 0, "unit_text": "B"}, "uncompressed_size": 0,
        "chunks": [], "content_root_hash": "", "sha256": "",
        "source": {"dumps": [], "schema_versions": []}}, Manifest)


def test_bounded_by_bytes_least_recently_used_out() -> None:
    cache = ManifestCache(max_bytes=250)
    for v in (1, 2):
        cache.put(("snapshots", SNAP, "a", v), _manifest(v), 100)
    assert cache.get(("snapshots", SNAP, "a", 1)) is not None  # 1 is now the most recent
    cache.put(("snapshots", SNAP, "a", 3), _manifest(3), 100)
    assert cache.get(("snapshots", SNAP, "a", 2)) is None  # least recently used: evicted
    assert cache.get(("snapshots", SNAP, "a", 1)) is not None
    assert len(cache) == 2 and cache.size == 200
    # A manifest bigger than the whole bound is not kept (it would evict everything).
    cache.put(("snapshots", SNAP, "a", 4), _manifest(4), 251)
    assert cache.get(("snapshots", SNAP, "a", 4)) is None and len(cache) == 2
    # The key is exact: another lineage or prefix is another manifest.
    assert cache.get(("snapshots", SNAP, "b", 1)) is None
    assert cache.get(("structured-contents", SNAP, "a", 1)) is None


def test_life_cycle_on_filesystem(tmp_path: Path, settings: Settings) -> None:
    blobs = CountingStore(settings.blob_root)
    check_manifest_cache(blobs, settings, lambda: blobs.reads)


def test_pointer_without_lineage(settings: Settings) -> None:
    check_old_pointer(FilesystemBlobStore(settings.blob_root), settings)
