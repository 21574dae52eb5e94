"""Build the diff between two published snapshot versions by a streaming merge on disk.

Memory stays flat whatever the snapshot size: each version's lines are read once to spill
``(key, line hash, revision, name, position)`` into a scratch SQLite database; a join there
gives the deletes (keys only in the base) and the adds/updates (keys only in, or changed in,
version N, by position); version N is then streamed a second time and the lines at those
positions are copied, byte for byte, into the diff's chunks. Both versions' content root
hashes are recomputed on the way and must equal their manifests', so a diff is never
published against corrupt data.

Publication mirrors snapshots: chunks, then the manifest, then the pointer LAST, under a lock
per identifier; re-running for a pair that already exists is a no-op (idempotent).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from feedserver.config import Settings
from feedserver.errors import IntegrityError, InvalidParameter, SnapshotNotFound
from feedserver.feeds.diffs.apply import probe
from feedserver.feeds.diffs.manifest import (
    ENCODER,
    PREFIX,
    DiffCounts,
    DiffIndex,
    DiffManifest,
    DiffRef,
    RawAdd,
    RawDelete,
    RawUpdate,
    chunk_key,
    diff_prefix,
    index_key,
    is_pair_folder,
    manifest_key,
)
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.scratch import scratch_db, scratch_dir
from feedserver.feeds.snapshots.chunks import ARTICLE_DECODER, ChunkWriter, StagedChunk
from feedserver.feeds.snapshots.extras import parquet_options
from feedserver.feeds.snapshots.manifest import ChunkInfo, Manifest, chunk_identifier
from feedserver.feeds.snapshots.parquet import BuiltParquet, shard_writer
from feedserver.feeds.snapshots.publish import build_lock
from feedserver.feeds.snapshots.shards import CLEANER
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.formats.checksums import checksum_file
from feedserver.formats.hashing import RootHasher, line_digest
from feedserver.formats.parquet import ParquetShardWriter, ShardInfo
from feedserver.identifiers import check_snapshot_identifier
from feedserver.models import ArticleKey, DiffAdd, DiffDelete, DiffUpdate, Size
from feedserver.storage.blobs import BlobStore

_BATCH = 5000

_SCHEMA = """
CREATE TABLE {t} (project TEXT NOT NULL, ns INTEGER NOT NULL, id INTEGER NOT NULL,
    hash BLOB NOT NULL, rev INTEGER, name TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (project, ns, id)) WITHOUT ROWID
"""


class ComputedDiff(msgspec.Struct, kw_only=True):
    """A diff staged in a local folder, before publication."""

    chunks: list[StagedChunk]
    counts: DiffCounts
    base_article_count: int
    article_count: int
    base_content_root_hash: str
    content_root_hash: str
    parquet: list[ShardInfo] | None = None  # the entries as Parquet shards, when asked for


def _open(path: Path) -> sqlite3.Connection:
    conn = scratch_db(path)
    for table in ("base", "new"):
        conn.execute(_SCHEMA.format(t=table))
    return conn


def _spill(conn: sqlite3.Connection, table: str, lines: Iterable[bytes], label: str
           ) -> RootHasher:
    hasher = RootHasher()
    rows: list[tuple[object, ...]] = []
    sql = f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?)"
    conn.execute("BEGIN")
    try:
        for pos, line in enumerate(lines):
            digest = line_digest(line)
            hasher.add_digest(digest)
            article = probe(line)
            key = article.key
            rows.append((key.project, key.namespace, key.identifier, digest, article.revision,
                         article.name, pos))
            if len(rows) >= _BATCH:
                conn.executemany(sql, rows)
                rows.clear()
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK")
        raise IntegrityError(f"{label} lists a page twice") from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return hasher


_DELETES = """
SELECT b.project, b.ns, b.id, b.name, b.rev FROM base AS b
WHERE NOT EXISTS (SELECT 1 FROM new AS n WHERE n.project = b.project AND n.ns = b.ns
                  AND n.id = b.id)
ORDER BY b.project, b.ns, b.id
"""
_CHANGES = """
SELECT n.pos, n.project, n.ns, n.id, b.id IS NULL, b.rev FROM new AS n
LEFT JOIN base AS b ON b.project = n.project AND b.ns = n.ns AND b.id = n.id
WHERE b.id IS NULL OR b.hash != n.hash
ORDER BY n.pos
"""


def compute_diff(
    base_lines: Callable[[], Iterable[bytes]],
    new_lines: Callable[[], Iterable[bytes]],
    folder: Path,
    *,
    chunk_size: int,
    level: int,
    parquet: ParquetShardWriter | None = None,
) -> ComputedDiff:
    """Stage the diff base → new into ``folder``. ``new_lines`` is called twice and must give
    the same lines both times (a published version does). With ``parquet`` (a ``kind="diff"``
    writer) every entry also becomes a Parquet row, in the same order; it is closed here."""
    conn = _open(folder / "diff.sqlite")
    writer = ChunkWriter(folder, chunk_size=chunk_size, level=level, prefix="diff")
    counts = DiffCounts()
    try:
        base_root = _spill(conn, "base", base_lines(), "the base version")
        new_root = _spill(conn, "new", new_lines(), "the new version")
        for project, ns, page_id, name, rev in conn.execute(_DELETES):
            key = ArticleKey(project, ns, page_id)
            writer.add(0, RawDelete(key=key, name=name, previous_revision=rev))
            if parquet is not None:
                parquet.add_entry(DiffDelete(key=key, name=name, previous_revision=rev))
            counts.delete += 1
        wanted = conn.execute(_CHANGES)
        nxt = wanted.fetchone()
        for pos, line in enumerate(new_lines()):
            if nxt is None:
                break
            if pos != nxt[0]:
                continue
            _, project, ns, page_id, added, rev = nxt
            key = ArticleKey(project, ns, page_id)
            if added:
                writer.add(0, RawAdd(key=key, article=msgspec.Raw(line)))
                if parquet is not None:
                    parquet.add_entry(DiffAdd(key=key, article=ARTICLE_DECODER.decode(line)),
                                      line)
                counts.add += 1
            else:
                writer.add(0, RawUpdate(key=key, article=msgspec.Raw(line), previous_revision=rev))
                if parquet is not None:
                    parquet.add_entry(DiffUpdate(key=key, article=ARTICLE_DECODER.decode(line),
                                                 previous_revision=rev), line)
                counts.update += 1
            nxt = wanted.fetchone()
        if nxt is not None:
            raise IntegrityError("the new version changed while the diff was built")
        chunks = writer.close()
        shards = parquet.close() if parquet is not None else None
    except BaseException:
        writer.abort()
        if parquet is not None:
            parquet.abort()
        raise
    finally:
        conn.close()
    return ComputedDiff(
        chunks=chunks, counts=counts, base_article_count=base_root.count,
        article_count=new_root.count, base_content_root_hash=base_root.hexdigest(),
        content_root_hash=new_root.hexdigest(), parquet=shards,
    )


def _leftovers(blobs: BlobStore, identifier: str, keep: set[str]) -> list[str]:
    """Keys of diff folders the pointer does not list (crashed or retired builds)."""
    prefix = f"{PREFIX}/{identifier}/"
    out = []
    for key in blobs.list(prefix):
        folder = key[len(prefix):].split("/", 1)[0]
        if is_pair_folder(folder) and folder not in keep:
            out.append(key)
    return out


def publish_diff(
    blobs: BlobStore, computed: ComputedDiff, *, base: Manifest, new: Manifest,
    lock_dir: Path, retention: int, parquet: BuiltParquet | None = None,
) -> DiffManifest:
    """Upload a staged diff (and its Parquet shards) and list it in the pointer (last); keep
    ``retention`` diffs."""
    identifier = new.identifier
    with build_lock(lock_dir, identifier):
        store = DiffStore(blobs)
        refs = store.refs(identifier)
        ref = DiffRef(base_version=base.version, version=new.version)
        if ref in refs:
            return store.manifest(identifier, new.version)
        blobs.delete(_leftovers(blobs, identifier,
                                {f"{r.base_version}-{r.version}" for r in refs}))
        whole = hashlib.sha256()
        chunks: list[ChunkInfo] = []
        offset = entries = uncompressed = 0
        for k, staged in enumerate(computed.chunks):
            key = chunk_key(identifier, base.version, new.version, k)
            sums = checksum_file(Path(staged.path), also=whole)
            sha, size = sums.sha256, sums.size
            blobs.put_file(key, Path(staged.path))
            chunks.append(ChunkInfo(
                identifier=chunk_identifier(identifier, k), index=k, key=key,
                article_count=staged.article_count, size=size,
                uncompressed_size=staged.uncompressed_size, sha256=sha, offset=offset))
            offset += size
            entries += staged.article_count
            uncompressed += staged.uncompressed_size
        manifest = DiffManifest(
            identifier=identifier, base_version=base.version, version=new.version,
            date_modified=datetime.now(UTC), is_part_of=new.is_part_of, namespace=new.namespace,
            base_content_root_hash=computed.base_content_root_hash,
            content_root_hash=computed.content_root_hash,
            base_article_count=computed.base_article_count,
            article_count=computed.article_count, counts=computed.counts, entry_count=entries,
            size=Size(value=offset, unit_text="B"), uncompressed_size=uncompressed,
            chunks=chunks, sha256=whole.hexdigest(),
        )
        if parquet is not None:
            prefix = diff_prefix(identifier, base.version, new.version)
            for name, path in parquet.files():
                blobs.put_file(prefix + name, path)
            manifest.parquet = parquet.parquet_set(prefix)
        blobs.put_bytes(manifest_key(identifier, base.version, new.version),
                        ENCODER.encode(manifest))
        listed = sorted([*refs, ref], key=lambda r: (r.version, r.base_version))
        keep = listed[-max(1, retention):]
        # The pointer is the commit point; retired diffs are deleted only after it moved.
        blobs.put_bytes(index_key(identifier), ENCODER.encode(
            DiffIndex(identifier=identifier, diffs=keep)))
        for old in listed[: len(listed) - len(keep)]:
            blobs.delete(list(blobs.list(diff_prefix(identifier, old.base_version,
                                                     old.version))))
        return manifest


def build_diff(
    blobs: BlobStore, settings: Settings, identifier: str, *,
    version: int | None = None, base_version: int | None = None,
) -> tuple[DiffManifest, bool] | None:
    """Build and publish the diff ending at ``version`` (default: current) from
    ``base_version`` (default: the version before it). Returns (manifest, built), ``built``
    False when it already existed; None when there is no earlier version to diff against."""
    check_snapshot_identifier(identifier)
    snapshots = SnapshotStore(blobs)
    versions = snapshots.versions(identifier)
    if version is None:
        version = versions[-1]
    if version not in versions:
        raise SnapshotNotFound(identifier, version)
    if base_version is None:
        earlier = [v for v in versions if v < version]
        if not earlier:
            return None
        base_version = earlier[-1]
    if base_version >= version:
        raise InvalidParameter(f"base version {base_version} is not before version {version}")
    for ref in DiffStore(blobs).refs(identifier):
        if ref.version == version and ref.base_version == base_version:
            return DiffStore(blobs).manifest(identifier, version), False
    base = snapshots.manifest(identifier, base_version)
    new = snapshots.manifest(identifier, version)
    with scratch_dir(settings.data_path, "diff-build-") as tmp:
        # Parquet when version N has it, with the text function and namespace names N's rows
        # were made with (else the rows of base + diff would not equal N's).
        writer = None
        if new.parquet is not None and new.parquet.text == CLEANER:
            writer = shard_writer(Path(tmp) / "parquet", identifier, kind="diff",
                                  namespaces=new.parquet.namespaces,
                                  options=parquet_options(settings))
        computed = compute_diff(
            lambda: snapshots.iter_lines(base), lambda: snapshots.iter_lines(new), Path(tmp),
            chunk_size=settings.chunk_size, level=settings.zstd_level, parquet=writer)
        _check_roots(computed, base, new)
        built = None
        if writer is not None and computed.parquet is not None and new.parquet is not None:
            built = BuiltParquet(writer.folder, identifier, computed.parquet, kind="diff",
                                 namespaces=new.parquet.namespaces,
                                 options=parquet_options(settings))
        manifest = publish_diff(blobs, computed, base=base, new=new,
                                lock_dir=settings.data_path / "locks" / "diffs",
                                retention=settings.retention_versions, parquet=built)
    return manifest, True


def _check_roots(computed: ComputedDiff, base: Manifest, new: Manifest) -> None:
    for label, got, manifest in (("base", computed.base_content_root_hash, base),
                                 ("new", computed.content_root_hash, new)):
        if got != manifest.content_root_hash:
            raise IntegrityError(
                f"{manifest.identifier} version {manifest.version} ({label}) does not match its "
                "content root hash: not diffing corrupt data", identifier=manifest.identifier)


def build_diffs(
    blobs: BlobStore, settings: Settings, identifiers: Iterable[str] | None = None,
) -> Iterator[tuple[str, tuple[DiffManifest, bool] | None]]:
    """``build_diff`` for each identifier (default: every published snapshot)."""
    targets = list(identifiers) if identifiers is not None else SnapshotStore(blobs).identifiers()
    for identifier in targets:
        yield identifier, build_diff(blobs, settings, identifier)
