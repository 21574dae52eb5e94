"""Snapshot feed endpoints: list, metadata, chunks and downloads (``/v2/snapshots``).

Downloads come in two representations (``negotiation``): WME's tar.gz, the default whenever
the version was built with it, and the native zstd NDJSON (``Accept: application/zstd`` or
``?format=zstd``). The WME metadata object keeps WME's names and describes the default
download; where our data is richer it adds fields:

* ``version`` (string, as in WME) is the **MD5 of the tar.gz** (``<id>.tar.gz``, or the
  chunk's ``chunk_<k>.tar.gz``), as WME's; for a version built without the WME format, the
  **content root hash** (a checksum of the records independent of chunking and compression).
  ``version_number`` is our integer version, usable as ``?version=N``.
* ``size`` is ``{value: MB (bytes / 1e6, 3 decimals), unit_text: "MB"}`` as in WME, of the
  default download; its exact byte count is ``size_bytes`` and its SHA-256 ``sha256`` (the
  ETag). ``formats`` lists every representation with its size and checksums.

Entitlement is checked from the identifier (``{wiki}_namespace_{n}``) before anything is read,
so a caller learns nothing about snapshots outside its plan (403 whether or not they exist).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, route

from feedserver.accounts.models import Principal
from feedserver.api import chunks
from feedserver.api.auth import PRINCIPAL, PrincipalDep, allowed, entitle
from feedserver.api.blob_stream import Ahead
from feedserver.api.fields import PathSet, check_paths
from feedserver.api.metered import ARCHIVE_RESPONSES, Metered
from feedserver.api.negotiation import (
    MEDIA_TYPES,
    Download,
    Format,
    FormatParam,
    archive_downloads,
    chunk_downloads,
    negotiate,
    zstd_download,
)
from feedserver.api.params import ChunkId, SnapshotId
from feedserver.api.problems import feed_responses
from feedserver.api.protocols import Injected, Snapshots
from feedserver.api.query import VersionParam, project, read_query, select
from feedserver.errors import FeedError, SnapshotNotFound
from feedserver.feeds.snapshots.manifest import ChunkInfo, Manifest, wme_archive
from feedserver.feeds.snapshots.store import Resolved
from feedserver.formats.checksums import Checksums
from feedserver.identifiers import parse_snapshot_identifier
from feedserver.plans import Feed, ProductFeed


class Ref(msgspec.Struct):
    identifier: str


class NamespaceRef(msgspec.Struct):
    identifier: int


class SizeMB(msgspec.Struct):
    value: float
    unit_text: str = "MB"


class FormatInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One representation of a download (``?format=`` or ``Accept`` picks it)."""

    format: Format
    media_type: str
    size_bytes: int
    sha256: str  # its ETag
    md5: str | None = None  # tar.gz: WME's ``version``


class SnapshotMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    """WME snapshot metadata, plus our exact sizes and checksums."""

    identifier: str
    version: str  # MD5 of the tar.gz as WME's (without it: the content root hash)
    version_number: int
    date_modified: datetime
    is_part_of: Ref
    in_language: Ref | None = None
    namespace: NamespaceRef
    size: SizeMB
    chunks: list[str]
    size_bytes: int
    uncompressed_size: int
    article_count: int
    sha256: str  # of the default download's bytes; its ETag
    content_root_hash: str
    previous_version: int | None = None
    versions: list[int] | None = None
    formats: list[FormatInfo] = msgspec.field(default_factory=list)
    parquet: list[str] | None = None  # Parquet shard identifiers, when the version has them


class ChunkMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    identifier: str
    version: str  # MD5 of chunk_<k>.tar.gz as WME's (without it: the zstd chunk's SHA-256)
    date_modified: datetime
    is_part_of: Ref
    in_language: Ref | None = None
    namespace: NamespaceRef
    size: SizeMB
    index: int
    size_bytes: int
    uncompressed_size: int
    article_count: int
    sha256: str  # of the default download's bytes; its ETag
    offset: int  # where this chunk's zstd file starts in the whole zstd download
    snapshot: str
    version_number: int
    formats: list[FormatInfo] = msgspec.field(default_factory=list)


SNAPSHOT_PATHS = PathSet.of(SnapshotMetadata)
CHUNK_PATHS = PathSet.of(ChunkMetadata)


def _mb(size: int) -> SizeMB:
    return SizeMB(value=round(size / 1e6, 3))


def _language(m: Manifest) -> Ref | None:
    return None if m.in_language is None else Ref(m.in_language.identifier)


def formats_info(wme: Checksums | None, zstd: Checksums) -> list[FormatInfo]:
    """The representations of a download, the default (tar.gz, when built) first."""
    out = [] if wme is None else [FormatInfo(
        format="tar.gz", media_type=MEDIA_TYPES["tar.gz"][0], size_bytes=wme.size,
        sha256=wme.sha256, md5=wme.md5)]
    out.append(FormatInfo(format="zstd", media_type=MEDIA_TYPES["zstd"][0],
                          size_bytes=zstd.size, sha256=zstd.sha256))
    return out


def snapshot_view(m: Manifest, versions: list[int] | None = None) -> SnapshotMetadata:
    wme = wme_archive(m.representations)
    formats = formats_info(None if wme is None else wme.archive,
                           Checksums(size=int(m.size.value), sha256=m.sha256))
    default = formats[0]
    return SnapshotMetadata(
        identifier=m.identifier, version=default.md5 or m.content_root_hash,
        version_number=m.version, date_modified=m.date_modified,
        is_part_of=Ref(m.is_part_of.identifier), in_language=_language(m),
        namespace=NamespaceRef(m.namespace.identifier), size=_mb(default.size_bytes),
        chunks=m.chunk_identifiers(), size_bytes=default.size_bytes,
        uncompressed_size=m.uncompressed_size, article_count=m.article_count,
        sha256=default.sha256, content_root_hash=m.content_root_hash,
        previous_version=m.previous_version, versions=versions, formats=formats,
        parquet=None if m.parquet is None else [s.identifier for s in m.parquet.shards],
    )


def chunk_view(m: Manifest, c: ChunkInfo) -> ChunkMetadata:
    formats = formats_info(None if c.wme is None else c.wme.archive,
                           Checksums(size=c.size, sha256=c.sha256))
    default = formats[0]
    return ChunkMetadata(
        identifier=c.identifier, version=default.md5 or c.sha256,
        date_modified=m.date_modified, is_part_of=Ref(m.is_part_of.identifier),
        in_language=_language(m), namespace=NamespaceRef(m.namespace.identifier),
        size=_mb(default.size_bytes), index=c.index, size_bytes=default.size_bytes,
        uncompressed_size=c.uncompressed_size, article_count=c.article_count,
        sha256=default.sha256, offset=c.offset, snapshot=m.identifier,
        version_number=m.version, formats=formats,
    )


class SnapshotFeed(msgspec.Struct, frozen=True, kw_only=True):
    """What tells apart the snapshot feeds served alike (article and Structured Contents
    snapshots): entitlement, where they are served, their metadata and ledger names. Both
    are metered under ``snapshots`` (``chunks`` for one chunk's download)."""

    feed: ProductFeed  # the plan feed entitled
    base: str  # the route prefix, e.g. "/v2/snapshots"
    title: str  # what a problem calls one version, e.g. "snapshot"
    view: Callable[[Manifest, list[int] | None], SnapshotMetadata]
    paths: PathSet  # what ``fields`` and ``filters`` may name
    zstd_infix: str = ""  # zstd download names: {id}{infix}_v{N}.ndjson.zst
    ledger_prefix: str = ""  # the ledger's resource names: {prefix}{id}@{N}
    export_flag: str = ""  # the offline export's flag for this feed, e.g. " --structured"


USAGE: Final = "snapshots"  # the usage feed of metadata and whole downloads


def _ahead(feed: SnapshotFeed, store: Snapshots, request: Request[Any, Any, Any],
           principal: Principal, metered: Metered, identifier: str, version: int | None,
           choose: Callable[[Manifest], Download]) -> tuple[Manifest | None, Ahead | None]:
    """The manifest the last pointer read named current (a hint, no I/O) and, started from
    it, the open of the first stored part a GET of it would stream (``Metered.start_ahead``):
    its GET then overlaps the pointer's. The hint is only a guess: ``_kept`` keeps the open
    only when the pointer names that very manifest. Entitled requests on a store that opens
    ahead (``Metered.opens_ahead``) only; None, None when there is no hint or the request is
    in error (the normal path answers it)."""
    if not metered.opens_ahead:
        return None, None
    try:
        wiki, ns = parse_snapshot_identifier(identifier)
        entitle(principal, feed.feed, wiki, ns)
        hint = store.hinted(identifier)
        if hint is None or version not in (None, hint.version):
            return None, None
        return hint, metered.start_ahead(request, choose(hint))
    except FeedError:
        return None, None


def _kept(ahead: Ahead | None, hint: Manifest | None, m: Manifest) -> Ahead | None:
    """``ahead`` when the manifest the pointer named is the hint it was opened from (the same
    cached object: the same lineage and version, so the same bytes under the same keys);
    else it is closed (its connection released) and None."""
    if ahead is not None and m is not hint:
        ahead.close()
        return None
    return ahead


async def _resolve(feed: SnapshotFeed, store: Snapshots, principal: Principal,
                   identifier: str, version: int | None) -> tuple[str, Resolved]:
    """The entitled request's version: on the event loop when the store can answer from
    memory and one ``stat`` (``SnapshotStore.resolved``: local files, pointer unchanged),
    else one worker-thread hop, which reads the pointer once."""
    wiki, ns = parse_snapshot_identifier(identifier)
    entitle(principal, feed.feed, wiki, ns)
    found = store.resolved(identifier, version)
    if found is None:
        found = await anyio.to_thread.run_sync(store.resolve, identifier, version)
    return wiki, found


async def _manifest(feed: SnapshotFeed, store: Snapshots, principal: Principal,
                    identifier: str, version: int | None) -> tuple[str, Manifest]:
    wiki, found = await _resolve(feed, store, principal, identifier, version)
    return wiki, found.manifest


async def list_versions(feed: SnapshotFeed, store: Snapshots, request: Request[Any, Any, Any],
                        principal: Principal, metered: Metered) -> Response[bytes]:
    """The latest version of every snapshot the plan covers; ``fields``, ``filters``,
    ``limit``."""
    query = check_paths(await read_query(request), feed.paths)

    def views() -> list[SnapshotMetadata]:
        out = []
        for identifier in sorted(store.identifiers()):
            wiki, ns = parse_snapshot_identifier(identifier)
            if not allowed(principal, feed.feed, wiki, ns):
                continue
            try:
                out.append(feed.view(store.manifest(identifier), None))
            except SnapshotNotFound:  # removed while listing
                continue
        return out

    items = select(await anyio.to_thread.run_sync(views), query)
    return await metered.metadata(request, principal, USAGE, None, items, many=True)


async def one_version(feed: SnapshotFeed, store: Snapshots, request: Request[Any, Any, Any],
                      principal: Principal, metered: Metered, identifier: str,
                      version: int | None) -> Response[bytes]:
    """One version's metadata with the versions retained; ``fields``."""
    query = check_paths(await read_query(request), feed.paths)
    wiki, found = await _resolve(feed, store, principal, identifier, version)
    item = project(msgspec.to_builtins(feed.view(found.manifest, found.versions)), query.fields)
    return await metered.metadata(request, principal, USAGE, wiki, item, many=False)


def snapshot_downloads(m: Manifest, zstd_infix: str = "") -> list[Download]:
    """``<id>.tar.gz`` (when built), then the zstd chunk files back to back."""
    zstd = zstd_download(m.chunks, Checksums(size=int(m.size.value), sha256=m.sha256),
                         f"{m.identifier}{zstd_infix}_v{m.version}.ndjson.zst")
    return archive_downloads(m.identifier, m.chunks, m.representations, zstd=zstd,
                             filename=f"{m.identifier}.tar.gz")


async def download_version(feed: SnapshotFeed, store: Snapshots,
                           request: Request[Any, Any, Any], principal: Principal,
                           metered: Metered, identifier: str, version: int | None,
                           fmt: Format | None) -> Response[Any]:
    """A version, in the representation negotiated."""

    def pick(m: Manifest) -> tuple[Download, str]:
        chosen = negotiate(snapshot_downloads(m, feed.zstd_infix),
                           request.headers.get("accept"), fmt)
        return chosen, f"{feed.ledger_prefix}{m.identifier}@{m.version}"

    return await _download(feed, store, request, principal, metered, identifier, version,
                           USAGE, pick)


async def _download(feed: SnapshotFeed, store: Snapshots, request: Request[Any, Any, Any],
                    principal: Principal, metered: Metered, identifier: str,
                    version: int | None, usage: Feed,
                    pick: Callable[[Manifest], tuple[Download, str]]) -> Response[Any]:
    """The representation ``pick`` chooses from the manifest the pointer names, metered as a
    ``usage`` download of the resource ``pick`` names; its first stored part opened while the
    pointer is read (``_ahead``), kept only when the pointer agrees (``_kept``)."""
    hint, ahead = _ahead(feed, store, request, principal, metered, identifier, version,
                         lambda m: pick(m)[0])
    try:
        wiki, m = await _manifest(feed, store, principal, identifier, version)
        chosen, resource = pick(m)
        kept, ahead = _kept(ahead, hint, m), None  # ``representation`` owns it now
        return await metered.representation(request, principal, usage, wiki, chosen,
                                            last_modified=m.date_modified, resource=resource,
                                            ahead=kept)
    finally:
        if ahead is not None:
            ahead.close()


async def list_version_chunks(feed: SnapshotFeed, store: Snapshots,
                              request: Request[Any, Any, Any], principal: Principal,
                              metered: Metered, identifier: str, version: int | None
                              ) -> Response[bytes]:
    """A version's chunk metadata; ``fields``, ``filters``, ``limit``."""
    query = check_paths(await read_query(request), CHUNK_PATHS)
    wiki, m = await _manifest(feed, store, principal, identifier, version)
    return await chunks.list_chunks(request, principal, metered, USAGE, wiki, m, query,
                                    chunk_view)


async def one_version_chunk(feed: SnapshotFeed, store: Snapshots,
                            request: Request[Any, Any, Any], principal: Principal,
                            metered: Metered, identifier: str, chunk_id: str,
                            version: int | None) -> Response[bytes]:
    """One chunk's metadata, by identifier or index; ``fields``."""
    query = check_paths(await read_query(request), CHUNK_PATHS)
    wiki, m = await _manifest(feed, store, principal, identifier, version)
    return await chunks.get_chunk(request, principal, metered, USAGE, wiki, m, query, chunk_id,
                                  chunk_view, SnapshotNotFound)


async def download_version_chunk(feed: SnapshotFeed, store: Snapshots,
                                 request: Request[Any, Any, Any], principal: Principal,
                                 metered: Metered, identifier: str, chunk_id: str,
                                 version: int | None, fmt: Format | None) -> Response[Any]:
    """One chunk, in the representation negotiated; metered as a chunk download."""

    def pick(m: Manifest) -> tuple[Download, str]:
        chunk = chunks.find_chunk(m, chunk_id, SnapshotNotFound)
        zstd = zstd_download([chunk], Checksums(size=chunk.size, sha256=chunk.sha256),
                             f"{chunk.identifier}{feed.zstd_infix}_v{m.version}.ndjson.zst")
        chosen = negotiate(chunk_downloads(chunk, zstd=zstd), request.headers.get("accept"),
                           fmt)
        return chosen, f"{feed.ledger_prefix}{chunk.identifier}@{m.version}"

    return await _download(feed, store, request, principal, metered, identifier, version,
                           "chunks", pick)


ARTICLES: Final = SnapshotFeed(feed="snapshots", base="/v2/snapshots", title="snapshot",
                               view=snapshot_view, paths=SNAPSHOT_PATHS)


@route("/", http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(list[SnapshotMetadata],
                                "Snapshots the plan covers (JSON or NDJSON)"))
async def list_snapshots(request: Request[Any, Any, Any], principal: PrincipalDep,
                         snapshots: Injected[Snapshots], metered: Injected[Metered]
                         ) -> Response[bytes]:
    """List snapshots; ``fields``, ``filters`` (namespace.identifier, is_part_of.identifier,
    in_language.identifier), ``limit``."""
    return await list_versions(ARTICLES, snapshots, request, principal, metered)


@route("/{identifier:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(SnapshotMetadata, "Snapshot metadata"))
async def get_snapshot(request: Request[Any, Any, Any], principal: PrincipalDep,
                       snapshots: Injected[Snapshots], metered: Injected[Metered],
                       identifier: SnapshotId, version: VersionParam = None) -> Response[bytes]:
    """One snapshot's metadata; ``?version=N`` for an older version; ``fields``."""
    return await one_version(ARTICLES, snapshots, request, principal, metered, identifier,
                             version)


@route("/{identifier:str}/download", http_method=["GET", "HEAD"], dependencies=PRINCIPAL,
       responses=ARCHIVE_RESPONSES)
async def download_snapshot(request: Request[Any, Any, Any], principal: PrincipalDep,
                            snapshots: Injected[Snapshots], metered: Injected[Metered],
                            identifier: SnapshotId, version: VersionParam = None,
                            fmt: FormatParam = None) -> Response[Any]:
    """The snapshot: WME's ``<id>.tar.gz`` (the default when built) or its zstd chunk files
    back to back (``Accept: application/zstd`` or ``?format=zstd``). Range, If-Range,
    If-None-Match; ``?version=N``."""
    return await download_version(ARTICLES, snapshots, request, principal, metered,
                                  identifier, version, fmt)


@route("/{identifier:str}/chunks", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(list[ChunkMetadata],
                                                        "The snapshot's chunks"))
async def list_chunks(request: Request[Any, Any, Any], principal: PrincipalDep,
                      snapshots: Injected[Snapshots], metered: Injected[Metered],
                      identifier: SnapshotId, version: VersionParam = None) -> Response[bytes]:
    """Chunk metadata of a snapshot version; ``fields``, ``filters``, ``limit``."""
    return await list_version_chunks(ARTICLES, snapshots, request, principal, metered,
                                     identifier, version)


@route("/{identifier:str}/chunks/{chunk_id:str}", http_method=["GET", "POST"],
       status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(ChunkMetadata, "Chunk metadata"))
async def get_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                    snapshots: Injected[Snapshots], metered: Injected[Metered],
                    identifier: SnapshotId, chunk_id: ChunkId, version: VersionParam = None
                    ) -> Response[bytes]:
    """One chunk, by identifier or index."""
    return await one_version_chunk(ARTICLES, snapshots, request, principal, metered,
                                   identifier, chunk_id, version)


@route("/{identifier:str}/chunks/{chunk_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=ARCHIVE_RESPONSES)
async def download_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                         snapshots: Injected[Snapshots], metered: Injected[Metered],
                         identifier: SnapshotId, chunk_id: ChunkId, version: VersionParam = None,
                         fmt: FormatParam = None) -> Response[Any]:
    """One chunk: WME's ``chunk_<k>.tar.gz`` (the default when built) or its zstd file;
    same negotiation, Range and ETag support as the snapshot."""
    return await download_version_chunk(ARTICLES, snapshots, request, principal, metered,
                                        identifier, chunk_id, version, fmt)


def router() -> Router:
    return Router("/v2/snapshots", route_handlers=[
        list_snapshots, get_snapshot, download_snapshot, list_chunks, get_chunk, download_chunk,
    ], tags=["snapshots"])
