"""Diff feed: the format of a diff between two snapshot versions, its blob layout and reader.

A diff from version B to version N of one snapshot identifier is NDJSON, one ``DiffEntry`` per
line, zstd-compressed in chunks exactly like a snapshot (one frame per chunk, so the chunks
served back to back are the whole download)::

    {"op":"delete","key":{"project":"enwiki","namespace":0,"identifier":12},"name":"…","previous_revision":7}
    {"op":"update","key":{…},"article":{…the full new Article…},"previous_revision":7}
    {"op":"add","key":{…},"article":{…}}

The ``article`` of an add/update is byte for byte the record's line in version N, so applying
the diff to version B reproduces N's lines exactly and its content root hash can be checked
against ``DiffManifest.content_root_hash`` (see ``apply``).

Layout in any ``BlobStore``::

    diffs/{identifier}/index.json                      publish pointer (written last)
    diffs/{identifier}/{base}-{version}/manifest.json
    diffs/{identifier}/{base}-{version}/{identifier}_chunk_{k}.ndjson.zst
    diffs/{identifier}/{base}-{version}/parquet/{identifier}_shard_{k}.parquet   (optional)

A diff of a version published with Parquet is published with Parquet too: the same entries as
rows (``op`` first, the key ``(wiki, namespace, id)``; ``feedserver.formats.parquet_rows``).
"""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from feedserver.errors import NotFound
from feedserver.feeds.snapshots.manifest import (
    CHUNK_SUFFIX,
    ChunkInfo,
    check_version,
    chunk_identifier,
    find_chunk,
)
from feedserver.feeds.snapshots.shards import ParquetSet
from feedserver.identifiers import check_snapshot_identifier
from feedserver.models import ArticleKey, DiffEntry, Namespace, Project, Size

PREFIX = "diffs"
_PAIR_RE = re.compile(r"^([1-9][0-9]{0,8})-([1-9][0-9]{0,8})\Z")


# --- entries ---------------------------------------------------------------------------------
# The typed entries (``DiffAdd`` | ``DiffUpdate`` | ``DiffDelete``) are wire records in
# ``feedserver.models``. These mirror them with the article kept as the raw JSON bytes: the
# builder copies version N's lines into the diff and ``apply`` copies them out again without a
# decode/encode round trip, so the per-article hashes survive byte for byte. Same tags, fields
# and field order (a test checks both decode the same lines).


class _RawEntry(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="op"):
    key: ArticleKey


class RawAdd(_RawEntry, tag="add", kw_only=True):
    article: msgspec.Raw


class RawUpdate(_RawEntry, tag="update", kw_only=True):
    article: msgspec.Raw
    previous_revision: int | None = None


class RawDelete(_RawEntry, tag="delete", kw_only=True):
    name: str
    previous_revision: int | None = None


RawEntry = RawAdd | RawUpdate | RawDelete

ENTRY_DECODER = msgspec.json.Decoder(DiffEntry)
RAW_ENTRY_DECODER = msgspec.json.Decoder(RawEntry)


# --- manifest and pointer ----------------------------------------------------------------------


class DiffCounts(msgspec.Struct, kw_only=True):
    add: int = 0
    update: int = 0
    delete: int = 0


class DiffManifest(msgspec.Struct, kw_only=True):
    """One published diff: base version → version of one snapshot identifier."""

    identifier: str
    base_version: int
    version: int
    date_modified: datetime
    is_part_of: Project
    namespace: Namespace
    base_content_root_hash: str  # of the base version: apply checks it is the right base
    content_root_hash: str  # of version N: what base + diff must hash to
    base_article_count: int
    article_count: int  # of version N
    counts: DiffCounts
    entry_count: int
    size: Size
    uncompressed_size: int
    chunks: list[ChunkInfo]
    sha256: str  # of the whole download (all chunks back to back)
    parquet: ParquetSet | None = None  # the entries as Parquet rows, when N has Parquet

    @property
    def name(self) -> str:
        return pair_name(self.base_version, self.version)

    def chunk_identifiers(self) -> list[str]:
        return [chunk.identifier for chunk in self.chunks]

    def chunk(self, ref: str) -> ChunkInfo:
        """A chunk by identifier or index; raises InvalidIdentifier / NotFound."""
        found = find_chunk(self.chunks, ref)
        if found is None:
            raise NotFound(f"chunk {ref!r} not found in diff {self.identifier} {self.name}")
        return found


class DiffRef(msgspec.Struct, kw_only=True, frozen=True):
    base_version: int
    version: int


class DiffIndex(msgspec.Struct, kw_only=True):
    """The publish pointer: which diffs of an identifier exist, oldest first."""

    identifier: str
    diffs: list[DiffRef]


ENCODER = msgspec.json.Encoder()
MANIFEST_DECODER = msgspec.json.Decoder(DiffManifest)
INDEX_DECODER = msgspec.json.Decoder(DiffIndex)


class DiffNotFound(NotFound):
    slug = "diff-not-found"

    def __init__(self, identifier: str, version: int | None = None) -> None:
        where = f" ending at version {version}" if version is not None else ""
        super().__init__(f"diff of {identifier!r}{where} not found", identifier=identifier)


# --- keys ------------------------------------------------------------------------------------


def pair_name(base_version: int, version: int) -> str:
    return f"{check_version(base_version)}-{check_version(version)}"


def index_key(identifier: str) -> str:
    return f"{PREFIX}/{check_snapshot_identifier(identifier)}/index.json"


def diff_prefix(identifier: str, base_version: int, version: int) -> str:
    return f"{PREFIX}/{check_snapshot_identifier(identifier)}/{pair_name(base_version, version)}/"


def manifest_key(identifier: str, base_version: int, version: int) -> str:
    return diff_prefix(identifier, base_version, version) + "manifest.json"


def chunk_key(identifier: str, base_version: int, version: int, index: int) -> str:
    return (diff_prefix(identifier, base_version, version)
            + chunk_identifier(identifier, index) + CHUNK_SUFFIX)


def is_pair_folder(name: str) -> bool:
    return bool(_PAIR_RE.match(name))


def parse_pair(name: str) -> tuple[int, int] | None:
    """``"{base}-{version}"`` -> ``(base, version)``, or None when it is not such a pair."""
    m = _PAIR_RE.match(name)
    return None if m is None else (int(m.group(1)), int(m.group(2)))
