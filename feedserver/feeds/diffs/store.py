"""Read published diffs from any ``BlobStore`` (the API and ``diff apply --manifest``)."""

from __future__ import annotations

import msgspec

from feedserver.errors import BlobNotFound, IntegrityError
from feedserver.feeds.diffs.manifest import (
    INDEX_DECODER,
    MANIFEST_DECODER,
    PREFIX,
    DiffIndex,
    DiffManifest,
    DiffNotFound,
    DiffRef,
    index_key,
    manifest_key,
)
from feedserver.feeds.snapshots.manifest import check_version, published_identifiers
from feedserver.storage.blobs import BlobStore


class DiffStore:
    """Read published diffs from any BlobStore. Identifiers are validated before any key."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def identifiers(self) -> list[str]:
        return published_identifiers(self.blobs, PREFIX)

    def index(self, identifier: str) -> DiffIndex | None:
        key = index_key(identifier)
        try:
            return INDEX_DECODER.decode(self.blobs.get_bytes(key))
        except BlobNotFound:
            return None
        except msgspec.DecodeError as exc:
            raise IntegrityError(f"corrupt diff index {key}: {exc}") from exc

    def refs(self, identifier: str) -> list[DiffRef]:
        index = self.index(identifier)
        return list(index.diffs) if index else []

    def manifest(self, identifier: str, version: int | None = None, *,
                 base_version: int | None = None) -> DiffManifest:
        """The diff ending at ``version`` (None: the latest), from ``base_version`` when given;
        raises DiffNotFound."""
        refs = self.refs(identifier)
        if version is not None:
            check_version(version)
            refs = [r for r in refs if r.version == version]
        if base_version is not None:
            check_version(base_version)
            refs = [r for r in refs if r.base_version == base_version]
        if not refs:
            raise DiffNotFound(identifier, version)
        ref = refs[-1]
        key = manifest_key(identifier, ref.base_version, ref.version)
        try:
            return MANIFEST_DECODER.decode(self.blobs.get_bytes(key))
        except BlobNotFound:
            raise DiffNotFound(identifier, version) from None
        except msgspec.DecodeError as exc:
            raise IntegrityError(f"corrupt diff manifest {key}: {exc}") from exc

    def manifests(self, identifier: str) -> list[DiffManifest]:
        return [self.manifest(identifier, ref.version) for ref in self.refs(identifier)]
