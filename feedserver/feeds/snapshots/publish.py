"""Atomic publication of a sealed snapshot version, retention, and the build lock.

Order of writes: chunks and the files of optional formats (``extras``), then
``manifest.json``, then the pointer ``index.json`` LAST. Until the pointer names a version no
reader sees it, so a crash at any point leaves the previous version current; the folders such
crashes leave behind are deleted by the next publish of the same identifier (under the lock).
Retention rewrites the pointer before deleting blobs, so a reader never follows the pointer to
a deleted version.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from feedserver.errors import BlobNotFound, Conflict
from feedserver.feeds.snapshots.extras import Extra
from feedserver.feeds.snapshots.manifest import (
    INDEX_DECODER,
    MANIFEST_ENCODER,
    PREFIX,
    ChunkInfo,
    Manifest,
    Prefix,
    SnapshotIndex,
    SourceInfo,
    StructuredInfo,
    chunk_identifier,
    chunk_key,
    index_key,
    manifest_key,
    version_prefix,
)
from feedserver.feeds.snapshots.sealing import SealedSnapshot
from feedserver.identifiers import check_snapshot_identifier
from feedserver.ingest.dump import DumpInfo
from feedserver.models import Language, Namespace, Project, Size
from feedserver.storage.blobs import BlobStore


@contextmanager
def build_lock(lock_dir: Path, identifier: str) -> Iterator[None]:
    """Exclusive, non-blocking lock per identifier; the OS releases it if the process dies."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{check_snapshot_identifier(identifier)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                f"another build of snapshot {identifier} is running (lock {path})",
                identifier=identifier,
            ) from None
        yield
    finally:
        os.close(fd)


def read_index(blobs: BlobStore, identifier: str, prefix: Prefix = PREFIX
               ) -> SnapshotIndex | None:
    try:
        return INDEX_DECODER.decode(blobs.get_bytes(index_key(identifier, prefix)))
    except BlobNotFound:
        return None


def _leftovers(blobs: BlobStore, identifier: str, keep: set[int], prefix: Prefix) -> list[str]:
    """Keys of version folders the pointer does not list (crashed or retired builds)."""
    folder_prefix = f"{prefix}/{identifier}/"
    out = []
    for key in blobs.list(folder_prefix):
        folder = key[len(folder_prefix):].split("/", 1)[0]
        if folder.isascii() and folder.isdigit() and int(folder) not in keep:
            out.append(key)
    return out


def _project(info: DumpInfo) -> Project:
    return Project(identifier=info.wiki, url=info.base_url or None, name=info.site_name or None,
                   in_language=Language(identifier=info.language) if info.language else None)


def publish(
    blobs: BlobStore,
    sealed: SealedSnapshot,
    *,
    identifier: str,
    info: DumpInfo,
    sources: list[DumpInfo],
    lock_dir: Path,
    retention: int,
    events_until: datetime | None = None,
    extras: Sequence[Extra] = (),
    prefix: Prefix = PREFIX,
    structured: StructuredInfo | None = None,
) -> Manifest:
    """Upload ``sealed`` (and the files ``extras`` built beside it) as the next version of
    ``identifier`` under ``prefix`` (article snapshots, or Structured Contents with
    ``structured`` set) and make it current."""
    if prefix != PREFIX:  # each prefix has its own versions, so its own lock
        lock_dir = lock_dir / prefix
    with build_lock(lock_dir, identifier):
        index = read_index(blobs, identifier, prefix)
        published = list(index.versions) if index else []
        blobs.delete(_leftovers(blobs, identifier, set(published), prefix))
        version = max(published, default=0) + 1
        chunks = []
        for k, chunk in enumerate(sealed.chunks):
            key = chunk_key(identifier, version, k, prefix)
            blobs.put_file(key, Path(chunk.path))
            chunks.append(ChunkInfo(
                identifier=chunk_identifier(identifier, k), index=k, key=key,
                article_count=chunk.article_count, size=chunk.size,
                uncompressed_size=chunk.uncompressed_size, sha256=chunk.sha256,
                offset=chunk.offset,
            ))
        manifest = Manifest(
            identifier=identifier,
            version=version,
            date_modified=datetime.now(UTC),
            is_part_of=_project(info),
            in_language=Language(identifier=info.language) if info.language else None,
            namespace=Namespace(identifier=sealed.namespace,
                                name=info.namespaces.get(sealed.namespace) or None),
            article_count=sealed.article_count,
            redirect_count=sealed.redirect_count,
            redirects_dropped=sealed.redirects_dropped,
            size=Size(value=sealed.size, unit_text="B"),
            uncompressed_size=sealed.uncompressed_size,
            chunks=chunks,
            content_root_hash=sealed.content_root_hash,
            sha256=sealed.sha256,
            source=SourceInfo(
                dumps=[s.source for s in sources],
                schema_versions=sorted({s.schema_version for s in sources}),
            ),
            previous_version=index.current if index else None,
            events_until=events_until,
            structured=structured,
        )
        for extra in extras:
            for name, path in extra.files():
                blobs.put_file(version_prefix(identifier, version, prefix) + name, path)
            manifest = extra.record(manifest)
        blobs.put_bytes(manifest_key(identifier, version, prefix),
                        MANIFEST_ENCODER.encode(manifest))
        versions = [*published, version]
        keep = versions[-max(1, retention):]
        # The pointer is the commit point; retired versions are deleted only after it moved.
        lineage = index.lineage if index is not None and index.lineage \
            else secrets.token_hex(8)  # a new pointer: version numbers start over
        blobs.put_bytes(index_key(identifier, prefix), MANIFEST_ENCODER.encode(
            SnapshotIndex(identifier=identifier, current=version, versions=keep,
                          lineage=lineage)))
        for old in versions[: len(versions) - len(keep)]:
            blobs.delete(list(blobs.list(version_prefix(identifier, old, prefix))))
        return manifest
