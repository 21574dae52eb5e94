"""Hourly batches: manifest, blob layout, atomic publication, reading and retention.

Layout in any ``BlobStore``::

    batches/{YYYY-MM-DD}/{HH}/index.json                                  pointer (written last)
    batches/{YYYY-MM-DD}/{HH}/{identifier}/{content}/manifest.json
    batches/{YYYY-MM-DD}/{HH}/{identifier}/{content}/{identifier}_chunk_{k}.ndjson.zst
    batches/{YYYY-MM-DD}/{HH}/{identifier}/{content}/wme/part_{k}.gz      WME tar.gz part

``{content}`` is the first 16 hex digits of the batch's SHA-256, so a rebuild with identical
input writes the identical keys and bytes, and a rebuild with different input (say, a log
trimmed since) never overwrites a file a reader may be downloading. The hour's ``index.json``
holds every manifest of the hour and is the commit point: an hour without it does not exist
for readers, so a crash mid-publish leaves nothing visible. An hour with no events still gets
an (empty) index: "built, nothing happened" differs from "not built yet".

The builder (reading the event log) is ``build``; the pure parts are ``hours`` (time) and
``files`` (contents).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from feedserver.errors import BlobNotFound, InvalidParameter, NotFound
from feedserver.feeds.batches.files import BatchFile
from feedserver.feeds.batches.hours import date_text, hour_text, parse_date_hour
from feedserver.feeds.snapshots.manifest import (
    CHUNK_SUFFIX,
    WME_FOLDER,
    ChunkInfo,
    Representation,
    WmeChunkFiles,
    chunk_identifier,
)
from feedserver.identifiers import check_snapshot_identifier
from feedserver.models import Language, Namespace, Project, Size
from feedserver.storage.blobs import BlobStore

PREFIX = "batches"


class BatchNotFound(NotFound):
    slug = "batch-not-found"

    def __init__(self, hour: datetime, identifier: str | None = None) -> None:
        what = f"batch {identifier!r}" if identifier else "batches"
        super().__init__(f"{what} for {date_text(hour)} hour {hour_text(hour)} not found",
                         date=date_text(hour), hour=hour_text(hour))


class BatchManifest(msgspec.Struct, kw_only=True):
    """One published batch: the latest version of each article of one identifier whose
    Article event entered the feed during one UTC hour."""

    identifier: str
    date: str  # YYYY-MM-DD (UTC)
    hour: str  # 00..23 (UTC)
    date_modified: datetime  # the newest record included (deterministic for a rebuild)
    is_part_of: Project
    in_language: Language | None = None
    namespace: Namespace
    article_count: int
    event_counts: dict[str, int]  # by event type (update, delete, visibility-change, ...)
    size: Size
    uncompressed_size: int
    sha256: str  # of the download: the chunks back to back
    content_root_hash: str
    chunks: list[ChunkInfo]
    # Other formats of the batch (the WME tar.gz: ``ChunkInfo.wme`` holds each chunk's part).
    representations: list[Representation] = msgspec.field(default_factory=list)


class HourIndex(msgspec.Struct, kw_only=True):
    """The publish pointer of one hour: every batch of that hour."""

    date: str
    hour: str
    batches: list[BatchManifest]

    def batch(self, identifier: str) -> BatchManifest | None:
        return next((b for b in self.batches if b.identifier == identifier), None)


ENCODER = msgspec.json.Encoder()
INDEX_DECODER = msgspec.json.Decoder(HourIndex)


# --- keys --------------------------------------------------------------------------------------


def hour_prefix(hour: datetime) -> str:
    return f"{PREFIX}/{date_text(hour)}/{hour_text(hour)}/"


def index_key(hour: datetime) -> str:
    return hour_prefix(hour) + "index.json"


def content_prefix(hour: datetime, identifier: str, sha256: str) -> str:
    return f"{hour_prefix(hour)}{check_snapshot_identifier(identifier)}/{sha256[:16]}/"


# --- pure: files -> manifests ------------------------------------------------------------------


def manifest_of(hour: datetime, f: BatchFile) -> BatchManifest:
    prefix = content_prefix(hour, f.identifier, f.sha256)
    chunks, offset = [], 0
    for k, c in enumerate(f.chunks):
        name = chunk_identifier(f.identifier, k)
        wme = None if c.wme is None else WmeChunkFiles(
            key=f"{prefix}{WME_FOLDER}part_{k}.gz", part=c.wme.part, archive=c.wme.archive)
        chunks.append(ChunkInfo(identifier=name, index=k, key=prefix + name + CHUNK_SUFFIX,
                                article_count=c.article_count, size=len(c.data),
                                uncompressed_size=c.uncompressed_size, sha256=c.sha256,
                                offset=offset, wme=wme))
        offset += len(c.data)
    representations: list[Representation] = [] if f.wme is None else [f.wme]
    return BatchManifest(
        identifier=f.identifier, date=date_text(hour), hour=hour_text(hour),
        date_modified=f.date_modified, is_part_of=Project(identifier=f.project),
        in_language=Language(identifier=f.language) if f.language else None,
        namespace=Namespace(identifier=f.namespace), article_count=f.article_count,
        event_counts=f.event_counts, size=Size(value=f.size, unit_text="B"),
        uncompressed_size=f.uncompressed_size, sha256=f.sha256,
        content_root_hash=f.content_root_hash, chunks=chunks,
        representations=representations)


# --- I/O ---------------------------------------------------------------------------------------


def publish(blobs: BlobStore, hour: datetime, files: Iterable[BatchFile]) -> HourIndex:
    """Upload the hour's batches, then its pointer; then drop files no pointer names."""
    manifests = []
    for f in files:
        m = manifest_of(hour, f)
        for chunk, info in zip(f.chunks, m.chunks, strict=True):
            blobs.put_bytes(info.key, chunk.data)
            if info.wme is not None:
                blobs.put_bytes(info.wme.key, chunk.wme_data)
        blobs.put_bytes(content_prefix(hour, f.identifier, f.sha256) + "manifest.json",
                        ENCODER.encode(m))
        manifests.append(m)
    index = HourIndex(date=date_text(hour), hour=hour_text(hour), batches=manifests)
    blobs.put_bytes(index_key(hour), ENCODER.encode(index))  # the commit point
    keep = {index_key(hour)}
    for m in manifests:
        keep.add(content_prefix(hour, m.identifier, m.sha256) + "manifest.json")
        keep.update(c.key for c in m.chunks)
        keep.update(c.wme.key for c in m.chunks if c.wme is not None)
    blobs.delete([k for k in blobs.list(hour_prefix(hour)) if k not in keep])
    return index


def _hour_of_key(key: str) -> datetime | None:
    """The hour a key under ``batches/`` belongs to (None for a stray key)."""
    parts = key.split("/")
    if len(parts) < 4 or parts[0] != PREFIX:
        return None
    try:
        return parse_date_hour(parts[1], parts[2])
    except InvalidParameter:
        return None


def built_hours(blobs: BlobStore) -> list[datetime]:
    """Hours with a published pointer, oldest first."""
    hours = {_hour_of_key(k) for k in blobs.list(PREFIX + "/") if k.endswith("/index.json")}
    return sorted(h for h in hours if h is not None)


def read_hour(blobs: BlobStore, hour: datetime) -> HourIndex:
    """The hour's pointer; ``BatchNotFound`` if the hour was not built (or has expired)."""
    try:
        return INDEX_DECODER.decode(blobs.get_bytes(index_key(hour)))
    except BlobNotFound:
        raise BatchNotFound(hour) from None


def read_batch(blobs: BlobStore, hour: datetime, identifier: str) -> BatchManifest:
    m = read_hour(blobs, hour).batch(check_snapshot_identifier(identifier))
    if m is None:
        raise BatchNotFound(hour, identifier)
    return m


def expire(blobs: BlobStore, cutoff: datetime) -> list[datetime]:
    """Delete the hours starting before ``cutoff`` (with the files of crashed builds):
    pointers first, so no reader follows one to deleted files; the rest after."""
    old = []
    for key in blobs.list(PREFIX + "/"):
        hour = _hour_of_key(key)
        if hour is not None and hour < cutoff:
            old.append((hour, key))
    pointers = [k for _, k in old if k.endswith("/index.json")]
    blobs.delete(pointers)
    blobs.delete([k for _, k in old if not k.endswith("/index.json")])
    return sorted({h for h, k in old if k.endswith("/index.json")})
