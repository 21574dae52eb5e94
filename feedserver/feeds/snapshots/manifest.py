"""Snapshot manifests, the publish pointer, identifiers and the blob layout.

Layout in any ``BlobStore``::

    snapshots/{identifier}/index.json          publish pointer (written last)
    snapshots/{identifier}/{version}/manifest.json
    snapshots/{identifier}/{version}/{identifier}_chunk_{k}.ndjson.zst
    snapshots/{identifier}/{version}/wme/part_{k}.gz     WME tar.gz part of chunk k (optional)
    snapshots/{identifier}/{version}/parquet/{identifier}_shard_{k}.parquet   (optional)

Besides its zstd chunks (the native format, always there) a version may carry other
*representations* of the same records, each listed in ``Manifest.representations`` with what it
needs (e.g. the WME tar.gz archive: per chunk a stored deflate part, ``ChunkInfo.wme``), and
Parquet shards (``Manifest.parquet``). A manifest written before a format existed simply lacks
it (every such field has a default), and readers serve what is listed.

Structured Contents snapshots have the same layout under ``structured-contents/`` (their own
versions, manifests with ``structured`` set, chunks of ``StructuredContent`` records, and
Parquet shards of schema ``structured/1``).

A version exists for readers only once ``index.json`` lists it. Identifiers are checked
(``feedserver.plans``) before any key is built, so no request can reach other keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

import msgspec

from feedserver.errors import InvalidIdentifier, NotFound
from feedserver.feeds.snapshots.shards import ParquetSet
from feedserver.formats.checksums import Checksums
from feedserver.formats.wme_tar import DEFAULT_LEVEL, ENTRY_LIMIT, TarGzPart
from feedserver.identifiers import (
    SNAPSHOT_RE,
    ascii_index,
    check_chunk_identifier,
    check_snapshot_identifier,
)
from feedserver.models import Language, Namespace, Project, Size
from feedserver.storage.blobs import BlobStore

# The blob prefixes snapshot versions are published under: articles, Structured Contents.
Prefix = Literal["snapshots", "structured-contents"]
PREFIX: Final = "snapshots"
STRUCTURED_PREFIX: Final = "structured-contents"
CHUNK_SUFFIX = ".ndjson.zst"
WME_FOLDER = "wme/"


class WmeChunkFiles(msgspec.Struct, frozen=True, kw_only=True):
    """A chunk in the WME format: its stored part (the chunk's NDJSON deflated as one piece
    of the archives' deflate stream, ``formats.wme_tar``) and the checksums of
    ``chunk_<k>.tar.gz`` built from it."""

    key: str  # blob key of the part
    part: TarGzPart
    archive: Checksums  # of chunk_<k>.tar.gz; ``md5`` is WME's chunk ``version``


class ChunkInfo(msgspec.Struct, kw_only=True):
    identifier: str
    index: int
    key: str
    article_count: int
    size: int
    uncompressed_size: int
    sha256: str
    offset: int  # byte offset of this chunk inside the whole-snapshot (zstd) download
    wme: WmeChunkFiles | None = None  # set when the version has a ``WmeArchive``


class WmeArchive(msgspec.Struct, frozen=True, kw_only=True, tag="wme-tar-gz",
                 tag_field="format"):
    """The WME tar.gz representation of a version (``<id>.tar.gz`` and ``chunk_<k>.tar.gz``,
    laid out from the chunks' parts by ``formats.wme_layout``)."""

    archive: Checksums  # of <id>.tar.gz; ``md5`` is WME's snapshot ``version``
    level: int = DEFAULT_LEVEL  # gzip level of the parts
    entry_limit: int = ENTRY_LIMIT  # WME cuts entries before this many NDJSON bytes
    zlib_ng: str = ""  # version of the zlib-ng library that deflated the parts


# Every representation a version may carry besides its zstd chunks (a tagged union: each
# format adds its struct here, tagged by ``format``).
Representation = WmeArchive


def wme_archive(representations: Sequence[Representation]) -> WmeArchive | None:
    """The WME tar.gz representation among ``representations``, if built."""
    return next((r for r in representations if isinstance(r, WmeArchive)), None)


class SourceInfo(msgspec.Struct, kw_only=True):
    dumps: list[str]
    schema_versions: list[str]


class StructuredInfo(msgspec.Struct, kw_only=True):
    """How a Structured Contents version was made (set on those manifests only).

    ``parsed`` pages were parsed from wikitext for this version: every page for a build from
    dumps, only the changed pages for ``diff advance`` (the others are copied from the
    previous version). ``degraded`` of them had broken wikitext somewhere (their records hold
    what could be parsed); ``problems`` counts pages per problem kind.
    """

    article_version: int | None = None  # the article snapshot version built from the same input
    parsed: int = 0
    degraded: int = 0
    problems: dict[str, int] = msgspec.field(default_factory=dict)


class Manifest(msgspec.Struct, kw_only=True):
    """One published version of one snapshot (``{wiki}_namespace_{ns}``)."""

    identifier: str
    version: int
    date_modified: datetime
    is_part_of: Project
    in_language: Language | None = None
    namespace: Namespace
    article_count: int
    redirect_count: int = 0
    redirects_dropped: int = 0
    size: Size
    uncompressed_size: int
    chunks: list[ChunkInfo]
    content_root_hash: str
    sha256: str
    source: SourceInfo
    previous_version: int | None = None
    # Built from the previous version plus state-store changes up to (excluding) this event
    # time (``feedserver snapshot update``); the next update starts from here.
    events_until: datetime | None = None
    # Other formats of this version's records (the zstd chunks are always there).
    representations: list[Representation] = msgspec.field(default_factory=list)
    # Parquet shards of this version, when it was built with them (``shards.py``).
    parquet: ParquetSet | None = None
    # Set on Structured Contents versions (their own prefix): what the parse made of the pages.
    structured: StructuredInfo | None = None

    def chunk_identifiers(self) -> list[str]:
        """The WME ``chunks`` field: chunk identifiers only."""
        return [chunk.identifier for chunk in self.chunks]

    def chunk(self, ref: str) -> ChunkInfo:
        """A chunk by identifier or index (as the WME spec allows); raises InvalidIdentifier."""
        found = find_chunk(self.chunks, ref)
        if found is None:
            raise NotFound(f"chunk {ref!r} not found in {self.identifier} version {self.version}")
        return found


class SnapshotIndex(msgspec.Struct, kw_only=True):
    """The publish pointer: which versions exist, newest last, and which is current.
    ``lineage``: a random token minted when the pointer is first written and kept by every
    later publish; a snapshot deleted and published again from version 1 gets a new one, so
    ``(identifier, lineage, version)`` names one manifest for good (``manifest_cache``).
    Pointers written before it existed have ``""``."""

    identifier: str
    current: int
    versions: list[int]
    lineage: str = ""


MANIFEST_ENCODER = msgspec.json.Encoder()
MANIFEST_DECODER = msgspec.json.Decoder(Manifest)
INDEX_DECODER = msgspec.json.Decoder(SnapshotIndex)


def find_chunk(chunks: Sequence[ChunkInfo], ref: str) -> ChunkInfo | None:
    """The chunk ``ref`` names: an index, or a chunk identifier (checked: InvalidIdentifier)."""
    index = ascii_index(ref)
    if index is not None:
        return chunks[index] if index < len(chunks) else None
    check_chunk_identifier(ref)
    return next((chunk for chunk in chunks if chunk.identifier == ref), None)


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidIdentifier(f"invalid snapshot version {version!r}")
    return version


def chunk_identifier(identifier: str, index: int) -> str:
    return f"{identifier}_chunk_{index}"


def index_key(identifier: str, prefix: Prefix = PREFIX) -> str:
    return f"{prefix}/{check_snapshot_identifier(identifier)}/index.json"


def version_prefix(identifier: str, version: int, prefix: Prefix = PREFIX) -> str:
    return f"{prefix}/{check_snapshot_identifier(identifier)}/{check_version(version)}/"


def manifest_key(identifier: str, version: int, prefix: Prefix = PREFIX) -> str:
    return version_prefix(identifier, version, prefix) + "manifest.json"


def chunk_key(identifier: str, version: int, index: int, prefix: Prefix = PREFIX) -> str:
    return (version_prefix(identifier, version, prefix) + chunk_identifier(identifier, index)
            + CHUNK_SUFFIX)


def wme_part_name(index: int) -> str:
    """A WME part's name under its version's folder."""
    return f"{WME_FOLDER}part_{index}.gz"


def wme_part_key(identifier: str, version: int, index: int, prefix: Prefix = PREFIX) -> str:
    return version_prefix(identifier, version, prefix) + wme_part_name(index)


def published_identifiers(blobs: BlobStore, prefix: str) -> list[str]:
    """Identifiers with a publish pointer ``{prefix}/{identifier}/index.json`` (snapshots,
    diffs); keys that are not a valid identifier are ignored."""
    out = []
    for key in blobs.list(f"{prefix}/"):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "index.json" and SNAPSHOT_RE.match(parts[1]):
            out.append(parts[1])
    return out
