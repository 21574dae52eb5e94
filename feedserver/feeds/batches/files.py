"""Hourly batch contents from article-topic records (pure: no storage, no clock).

Per identifier ``{project}_namespace_{ns}``, the LATEST record of every article whose record
falls in the hour, deletes included (as WME: the batch job applies no event-type exclusion).
The latest is the last one appended: one article's records share a key, so they share a
partition and its offset order is their order; only if the partition count changed can two
records of one article sit on different partitions, then the later record timestamp wins.

The lines are the record values as stored (the consumer's canonical msgspec encoding, the
same bytes the realtime stream sends), sorted by page id, compressed one zstd frame per chunk
with a one-shot compressor: identical records give identical bytes, so a rebuild of an hour
is idempotent down to the byte. With ``wme_level`` set, each chunk's NDJSON is also deflated
into its WME tar.gz part (``formats.wme_tar``; in memory, batches are small), from which the
batch's ``<id>.tar.gz`` is laid out, with its checksums.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec
import zstandard

from feedserver.feeds.snapshots.manifest import WmeArchive
from feedserver.formats.gzip_pieces import DEFLATE_VERSION
from feedserver.formats.hashing import article_hash, root_hash
from feedserver.formats.wme_layout import SnapshotArchiveBuilder, WmeChunk
from feedserver.identifiers import PROJECT_RE, SNAPSHOT_RE
from feedserver.models import ArticleKey
from feedserver.storage.eventlog import LogRecord

log = logging.getLogger(__name__)


class _Ref(msgspec.Struct):
    identifier: str


class _NamespaceRef(msgspec.Struct):
    identifier: int


class _EventRef(msgspec.Struct):
    type: str = "update"


class _Head(msgspec.Struct):
    """The few Article fields a batch needs; decoding it also checks the value is JSON."""

    identifier: int
    namespace: _NamespaceRef
    is_part_of: _Ref
    in_language: _Ref | None = None
    event: _EventRef | None = None


_HEAD = msgspec.json.Decoder(_Head)


class Picked(msgspec.Struct, frozen=True):
    """The latest record of one article in the hour."""

    key: ArticleKey
    partition: int
    offset: int
    timestamp_ms: int
    line: bytes
    event_type: str
    language: str | None


class BatchChunk(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes
    article_count: int
    uncompressed_size: int
    sha256: str
    wme_data: bytes = b""  # the chunk's WME tar.gz part (when built)
    wme: WmeChunk | None = None


class BatchFile(msgspec.Struct, frozen=True, kw_only=True):
    """One identifier's batch for one hour, ready to publish."""

    identifier: str
    project: str
    namespace: int
    language: str | None
    article_count: int
    event_counts: dict[str, int]
    uncompressed_size: int
    size: int
    sha256: str
    content_root_hash: str
    date_modified: datetime  # the latest record timestamp included: deterministic
    chunks: list[BatchChunk]
    wme: WmeArchive | None = None  # the batch's <id>.tar.gz (when built)


def pick(record: LogRecord) -> Picked | None:
    """The record as a batch candidate; None (logged) for a value that is not an Article."""
    value = record.value.strip()
    try:
        head = _HEAD.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("batch: skipping unreadable record %s:%d:%d: %s", record.topic,
                    record.partition, record.offset, exc)
        return None
    project, ns = head.is_part_of.identifier, head.namespace.identifier
    if not PROJECT_RE.match(project) or not SNAPSHOT_RE.match(f"{project}_namespace_{ns}"):
        log.warning("batch: skipping record %s:%d:%d with project %r namespace %r",
                    record.topic, record.partition, record.offset, project[:64], ns)
        return None
    if b"\n" in value:  # not our encoder's output: make it one NDJSON line
        value = msgspec.json.encode(msgspec.json.decode(value))
    return Picked(key=ArticleKey(project, ns, head.identifier), partition=record.partition,
                  offset=record.offset, timestamp_ms=record.timestamp_ms, line=value,
                  event_type=head.event.type if head.event else "update",
                  language=head.in_language.identifier if head.in_language else None)


def _later(a: Picked, b: Picked) -> bool:
    """Is ``a`` later than ``b`` (same article)?"""
    if a.partition == b.partition:
        return a.offset > b.offset
    return (a.timestamp_ms, a.partition, a.offset) > (b.timestamp_ms, b.partition, b.offset)


def keep_latest(out: dict[ArticleKey, Picked], record: LogRecord, start_ms: int,
                end_ms: int) -> None:
    """Fold one record into ``out`` (latest record per article stamped in
    ``[start_ms, end_ms)``); records outside the hour are ignored."""
    if not start_ms <= record.timestamp_ms < end_ms:
        return
    picked = pick(record)
    if picked is None:
        return
    seen = out.get(picked.key)
    if seen is None or _later(picked, seen):
        out[picked.key] = picked


def latest(records: Iterable[LogRecord], start_ms: int, end_ms: int) -> dict[ArticleKey, Picked]:
    """The latest record per article among those stamped in ``[start_ms, end_ms)``."""
    out: dict[ArticleKey, Picked] = {}
    for record in records:
        keep_latest(out, record, start_ms, end_ms)
    return out


def _chunks(lines: list[bytes], chunk_size: int, level: int,
            wme: SnapshotArchiveBuilder | None) -> list[BatchChunk]:
    compressor = zstandard.ZstdCompressor(level=level)
    out: list[BatchChunk] = []
    buf = bytearray()
    n = 0

    def close() -> None:
        data = compressor.compress(bytes(buf))
        part, built = io.BytesIO(), None
        if wme is not None:
            built = wme.add_chunk([bytes(buf)], part, data_size=len(buf))
        out.append(BatchChunk(data=data, article_count=n, uncompressed_size=len(buf),
                              sha256=hashlib.sha256(data).hexdigest(),
                              wme_data=part.getvalue(), wme=built))

    for line in lines:
        buf += line
        buf += b"\n"
        n += 1
        if len(buf) >= chunk_size:
            close()
            buf.clear()
            n = 0
    if n:
        close()
    return out


def batch_files(picked: Iterable[Picked], *, chunk_size: int, level: int,
                wme_level: int | None = None) -> list[BatchFile]:
    """One ``BatchFile`` per identifier, sorted by identifier; records sorted by page id.
    ``wme_level``: also build the WME tar.gz parts, deflated at that gzip level."""
    groups: dict[tuple[str, int], list[Picked]] = {}
    for p in picked:
        groups.setdefault((p.key.project, p.key.namespace), []).append(p)
    files = []
    for (project, ns), items in sorted(groups.items()):
        items.sort(key=lambda p: p.key.identifier)
        lines = [p.line for p in items]
        identifier = f"{project}_namespace_{ns}"
        wme = None if wme_level is None else SnapshotArchiveBuilder(identifier, level=wme_level)
        chunks = _chunks(lines, max(1, chunk_size), level, wme)
        whole = hashlib.sha256()
        for chunk in chunks:
            whole.update(chunk.data)
        counts: dict[str, int] = {}
        for p in items:
            counts[p.event_type] = counts.get(p.event_type, 0) + 1
        language = next((p.language for p in items if p.language), None)
        files.append(BatchFile(
            identifier=identifier, project=project, namespace=ns,
            language=language, article_count=len(items),
            event_counts=dict(sorted(counts.items())),
            uncompressed_size=sum(c.uncompressed_size for c in chunks),
            size=sum(len(c.data) for c in chunks), sha256=whole.hexdigest(),
            content_root_hash=root_hash(article_hash(line) for line in lines),
            date_modified=datetime.fromtimestamp(
                max(p.timestamp_ms for p in items) / 1000, tz=UTC),
            chunks=chunks, wme=None if wme is None else WmeArchive(
                archive=wme.finish(), level=wme.level, zlib_ng=DEFLATE_VERSION),
        ))
    return files
