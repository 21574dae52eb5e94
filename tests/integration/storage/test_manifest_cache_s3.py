"""The snapshot reader's manifest cache on a real moto_server: one GET (the publish pointer)
per read of a published version once its manifest is cached, and the right manifest as
versions are published, retired, and the snapshot deleted and published again."""

from __future__ import annotations

import msgspec
import pytest

from feedserver.config import Settings
from feedserver.storage.blobs.s3 import S3BlobStore
from tests.fixtures.manifest_cache import check_manifest_cache, check_old_pointer

pytestmark = pytest.mark.integration


class CountingS3(S3BlobStore):
    """The real S3 store, remembering which objects ``get_bytes`` fetched."""

    reads: list[str]

    def get_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().get_bytes(key)


def _store(settings: Settings) -> CountingS3:
    store = CountingS3.from_settings(settings)
    assert isinstance(store, CountingS3)
    store.reads = []
    return store


def test_life_cycle_on_moto(s3_settings: Settings) -> None:
    settings = msgspec.structs.replace(s3_settings, chunk_size=4000, retention_versions=2,
                                       wme_archives=False, s3_create_bucket=True)
    blobs = _store(settings)
    check_manifest_cache(blobs, settings, lambda: blobs.reads)


def test_pointer_without_lineage_on_moto(s3_settings: Settings) -> None:
    settings = msgspec.structs.replace(s3_settings, chunk_size=4000, retention_versions=2,
                                       wme_archives=False, s3_create_bucket=True)
    check_old_pointer(_store(settings), settings)
