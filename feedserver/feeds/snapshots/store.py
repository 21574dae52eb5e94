"""Read published snapshots from any ``BlobStore``: versions, manifests, lines, verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import msgspec

from feedserver.errors import BlobNotFound, IntegrityError, SnapshotNotFound
from feedserver.feeds.snapshots.chunks import ARTICLE_DECODER, iter_lines
from feedserver.feeds.snapshots.manifest import (
    INDEX_DECODER,
    MANIFEST_DECODER,
    PREFIX,
    Manifest,
    Prefix,
    SnapshotIndex,
    check_version,
    index_key,
    manifest_key,
    published_identifiers,
)
from feedserver.feeds.snapshots.manifest_cache import Key, ManifestCache
from feedserver.feeds.snapshots.parquet import verify_parquet
from feedserver.feeds.snapshots.pointers import Pointers, pin, release
from feedserver.feeds.snapshots.wme import verify_parts
from feedserver.formats.hashing import RootHasher
from feedserver.identifiers import check_snapshot_identifier
from feedserver.models import Article
from feedserver.storage.blobs import BlobStore


class Resolved(msgspec.Struct, frozen=True):
    """One version's manifest and the versions retained, from one read of the pointer."""

    manifest: Manifest
    versions: list[int]


class SnapshotStore:
    """Read published snapshots from any BlobStore. Identifiers are validated first.
    ``prefix``: article snapshots (``snapshots``) or Structured Contents ones.

    The publish pointer is read on every call (it moves when a version is published or
    retired); the manifests of published versions are immutable and are kept in ``cache``
    (``manifest_cache``), so a download or a listing reads one object per snapshot, not two.
    On a store of local files, ``resolved`` answers without reading anything when one
    ``stat`` shows the pointer file unchanged since its last read (``pointers``).
    """

    def __init__(self, blobs: BlobStore, prefix: Prefix = PREFIX,
                 cache: ManifestCache | None = None) -> None:
        self.blobs = blobs
        self.prefix: Prefix = prefix
        self.cache = cache if cache is not None else ManifestCache()
        self.pointers = Pointers()

    def identifiers(self) -> list[str]:
        return published_identifiers(self.blobs, self.prefix)

    def _index(self, identifier: str) -> SnapshotIndex:
        key = index_key(check_snapshot_identifier(identifier), self.prefix)
        path = self.blobs.local_path(key)
        held = pin(path) if path is not None else None  # before the read: see pointers
        try:
            index = self._read_index(identifier, key)
        except BaseException:
            release(held)
            raise
        if path is not None:
            self.pointers.remember(identifier, path, held, index)
        return index

    def _read_index(self, identifier: str, key: str) -> SnapshotIndex:
        try:
            return INDEX_DECODER.decode(self.blobs.get_bytes(key))
        except BlobNotFound:
            raise SnapshotNotFound(identifier) from None
        except msgspec.DecodeError as exc:
            raise IntegrityError(f"corrupt snapshot index {key}: {exc}") from exc

    def versions(self, identifier: str) -> list[int]:
        return list(self._index(identifier).versions)

    def manifest(self, identifier: str, version: int | None = None) -> Manifest:
        """The manifest of ``version`` (None: the current one); raises SnapshotNotFound."""
        return self.resolve(identifier, version).manifest

    def resolve(self, identifier: str, version: int | None = None) -> Resolved:
        """The manifest of ``version`` (None: the current one) and the versions retained,
        from ONE read of the pointer; raises SnapshotNotFound."""
        index = self._index(identifier)
        cached = self._pick(identifier, index, version)
        if (manifest := self.cache.get(cached)) is None:
            manifest = self._read_manifest(identifier, cached)
        return Resolved(manifest=manifest, versions=list(index.versions))

    def resolved(self, identifier: str, version: int | None = None) -> Resolved | None:
        """Without reading any blob (called on the event loop): ``resolve``'s answer when
        the store keeps local files, one ``stat`` shows the pointer file unchanged since it
        was last read, and the manifest is cached; else None (then ``resolve`` in a worker
        thread; only pointers read from local files are remembered). Raises
        SnapshotNotFound (a version the pointer does not list)."""
        if (index := self.pointers.unchanged(identifier)) is None:
            return None
        cached = self._pick(identifier, index, version)
        if (manifest := self.cache.get(cached)) is None:
            return None
        return Resolved(manifest=manifest, versions=list(index.versions))

    def _pick(self, identifier: str, index: SnapshotIndex, version: int | None) -> Key:
        """The cache key of the manifest of the version asked for (None: the current one)
        as the pointer lists it; noted as current when it is. Raises SnapshotNotFound."""
        if version is None:
            version = index.current
        elif check_version(version) not in index.versions:
            raise SnapshotNotFound(identifier, version)
        cached = (self.prefix, identifier, index.lineage, version)
        if version == index.current:
            self.cache.note_current(cached)
        return cached

    def _read_manifest(self, identifier: str, cached: Key) -> Manifest:
        version = cached[3]
        key = manifest_key(identifier, version, self.prefix)
        try:
            raw = self.blobs.get_bytes(key)
            manifest = MANIFEST_DECODER.decode(raw)
        except BlobNotFound:
            raise SnapshotNotFound(identifier, version) from None
        except msgspec.DecodeError as exc:
            raise IntegrityError(f"corrupt manifest {key}: {exc}") from exc
        if manifest.identifier != identifier or manifest.version != version:
            raise IntegrityError(f"manifest {key} names {manifest.identifier} version "
                                 f"{manifest.version}")
        self.cache.put(cached, manifest, len(raw))
        return manifest

    def hinted(self, identifier: str) -> Manifest | None:
        """No I/O: the cached manifest of the version current at the last pointer read, or
        None. A hint to start work early, never an answer: ``manifest`` decides. A manifest
        ``manifest`` returns IS the hint (``is``) exactly when the pointer still names the
        hinted lineage and version (one cached object per key)."""
        return self.cache.current(self.prefix, check_snapshot_identifier(identifier))

    def iter_lines(self, manifest: Manifest) -> Iterator[bytes]:
        """Raw NDJSON lines (without newline) of every chunk in order."""
        for chunk in manifest.chunks:
            yield from iter_lines(self.blobs.open_range(chunk.key))

    def iter_articles(self, manifest: Manifest) -> Iterator[Article]:
        for line in self.iter_lines(manifest):
            yield ARTICLE_DECODER.decode(line)

    def verify(self, manifest: Manifest) -> None:
        """Re-hash every chunk, the whole download and the content root, then the other
        formats: the WME parts and archives, and the Parquet shards (bytes, rows, per-article
        hashes) when the version has them; raise IntegrityError."""
        whole = hashlib.sha256()
        root = RootHasher()
        offset = articles = 0
        contents: list[str] = []  # SHA-256 of each chunk's NDJSON, for the other formats
        for chunk in manifest.chunks:
            digest = hashlib.sha256()
            sizes = [0]

            def tee(blocks: Iterator[bytes], digest: Any = digest, sizes: list[int] = sizes
                    ) -> Iterator[bytes]:
                for block in blocks:
                    digest.update(block)
                    whole.update(block)
                    sizes[0] += len(block)
                    yield block

            count = 0
            content = hashlib.sha256()
            for line in iter_lines(tee(self.blobs.open_range(chunk.key))):
                root.add_digest(hashlib.sha256(line).digest())
                content.update(line)
                content.update(b"\n")
                count += 1
            contents.append(content.hexdigest())
            size = sizes[0]
            if size != chunk.size or digest.hexdigest() != chunk.sha256 or chunk.offset != offset:
                raise IntegrityError(f"chunk {chunk.identifier} does not match its checksum",
                                     identifier=manifest.identifier)
            if count != chunk.article_count:
                raise IntegrityError(f"chunk {chunk.identifier} holds {count} records, "
                                     f"manifest says {chunk.article_count}")
            offset += size
            articles += count
        if whole.hexdigest() != manifest.sha256 or offset != manifest.size.value:
            raise IntegrityError(f"{manifest.identifier} download does not match its checksum")
        if articles != manifest.article_count:
            raise IntegrityError(f"{manifest.identifier} holds {articles} records, "
                                 f"manifest says {manifest.article_count}")
        if root.hexdigest() != manifest.content_root_hash:
            raise IntegrityError(f"{manifest.identifier} content root hash does not match")
        verify_parts(self.blobs, manifest, contents)
        if manifest.parquet is not None:
            verify_parquet(self.blobs, manifest.parquet, rows=manifest.article_count,
                           content_root_hash=manifest.content_root_hash)

