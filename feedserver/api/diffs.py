"""Diff feed endpoints (``/v2/diffs``): list, metadata, chunks and downloads.

Shaped like ``/v2/snapshots`` (same query handling, entitlements, metering and download code:
``downloads.serve`` gives HEAD, ETag/304, single and multiple Ranges). A diff is addressed by
its snapshot identifier and the version it ends at (``?version=N``, default: the latest
diff). The metadata object carries what a client needs to verify ``base + diff``:
``base_version``, ``base_content_root_hash`` and ``content_root_hash``; the full manifest
(the input of ``feedserver diff apply --manifest``) is served at ``.../manifest``.

Entitlement (feed ``diffs``, project, namespace) is checked from the identifier before
anything is read, so callers learn nothing about diffs outside their plan.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, route
from litestar.openapi import ResponseSpec

from feedserver.accounts.models import Principal
from feedserver.api import chunks
from feedserver.api.auth import PRINCIPAL, PrincipalDep, allowed, entitle
from feedserver.api.metered import DOWNLOAD_RESPONSES, Metered
from feedserver.api.params import ChunkId, Pair, SnapshotId
from feedserver.api.problems import FEED_ERRORS, feed_responses
from feedserver.api.protocols import Injected
from feedserver.api.query import VersionParam, project, read_query, select
from feedserver.api.snapshots import NamespaceRef, Ref, SizeMB
from feedserver.errors import NotFound
from feedserver.feeds.diffs.manifest import ENCODER, DiffManifest, DiffNotFound, parse_pair
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.snapshots.manifest import ChunkInfo
from feedserver.identifiers import parse_snapshot_identifier

FEED: Final = "diffs"


class Counts(msgspec.Struct, kw_only=True):
    add: int
    update: int
    delete: int


class DiffMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One diff: what a client needs to verify ``base + diff`` = version ``version_number``."""

    identifier: str
    version: str  # the download's SHA-256
    date_modified: datetime
    is_part_of: Ref
    namespace: NamespaceRef
    base_version: int
    version_number: int
    size: SizeMB
    chunks: list[str]
    size_bytes: int
    uncompressed_size: int
    entry_count: int
    counts: Counts
    base_article_count: int
    article_count: int
    base_content_root_hash: str
    content_root_hash: str
    sha256: str
    versions: list[int] | None = None
    parquet: list[str] | None = None  # Parquet shard identifiers, when the diff has them


class DiffChunkMetadata(msgspec.Struct, kw_only=True):
    identifier: str
    version: str  # the chunk's SHA-256
    date_modified: datetime
    is_part_of: Ref
    namespace: NamespaceRef
    base_version: int
    version_number: int
    size: SizeMB
    index: int
    size_bytes: int
    uncompressed_size: int
    entry_count: int
    sha256: str
    offset: int
    diff: str


def _mb(size: int) -> SizeMB:
    return SizeMB(value=round(size / 1e6, 3))


def diff_view(m: DiffManifest, versions: list[int] | None = None) -> DiffMetadata:
    size = int(m.size.value)
    return DiffMetadata(
        identifier=m.identifier, version=m.sha256, date_modified=m.date_modified,
        is_part_of=Ref(m.is_part_of.identifier), namespace=NamespaceRef(m.namespace.identifier),
        base_version=m.base_version, version_number=m.version, size=_mb(size),
        chunks=m.chunk_identifiers(), size_bytes=size, uncompressed_size=m.uncompressed_size,
        entry_count=m.entry_count,
        counts=Counts(add=m.counts.add, update=m.counts.update, delete=m.counts.delete),
        base_article_count=m.base_article_count, article_count=m.article_count,
        base_content_root_hash=m.base_content_root_hash,
        content_root_hash=m.content_root_hash, sha256=m.sha256, versions=versions,
        parquet=None if m.parquet is None else [s.identifier for s in m.parquet.shards])


def chunk_view(m: DiffManifest, c: ChunkInfo) -> DiffChunkMetadata:
    return DiffChunkMetadata(
        identifier=c.identifier, version=c.sha256, date_modified=m.date_modified,
        is_part_of=Ref(m.is_part_of.identifier), namespace=NamespaceRef(m.namespace.identifier),
        base_version=m.base_version, version_number=m.version, size=_mb(c.size),
        index=c.index, size_bytes=c.size, uncompressed_size=c.uncompressed_size,
        entry_count=c.article_count, sha256=c.sha256, offset=c.offset, diff=m.identifier)


# The stored DiffManifest, byte for byte. Its JSON Schema is schemas/diff_manifest.json: the
# OpenAPI generator would write its ``int | float`` sizes as a oneOf that 265 matches twice.
_MANIFEST = {**FEED_ERRORS, 200: ResponseSpec(
    None, media_type="application/json", description="The full diff manifest (input of "
    "`feedserver diff apply`; JSON Schema: schemas/diff_manifest.json)")}


async def _manifest(diffs: DiffStore, principal: Principal, identifier: str, version: int | None,
                    base_version: int | None = None) -> tuple[str, DiffManifest]:
    wiki, ns = parse_snapshot_identifier(identifier)
    entitle(principal, FEED, wiki, ns)
    m = await anyio.to_thread.run_sync(
        partial(diffs.manifest, identifier, version, base_version=base_version))
    return wiki, m


async def _pair_manifest(diffs: DiffStore, principal: Principal, identifier: str, pair: str
                         ) -> tuple[str, DiffManifest]:
    """The diff ``{base}-{version}`` of ``identifier`` (entitlement checked first)."""
    wiki, ns = parse_snapshot_identifier(identifier)
    entitle(principal, FEED, wiki, ns)
    versions = parse_pair(pair)
    if versions is None:
        raise NotFound(f"no diff {pair[:40]!r}: diffs are named {{base}}-{{version}}")
    return await _manifest(diffs, principal, identifier, versions[1], versions[0])


@route("/", http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(list[DiffMetadata], "Every retained diff the plan covers"))
async def list_diffs(request: Request[Any, Any, Any], principal: PrincipalDep,
                     diffs: Injected[DiffStore], metered: Injected[Metered]) -> Response[bytes]:
    """Every published diff the caller may see (all retained pairs, oldest first)."""
    query = await read_query(request)

    def views() -> list[DiffMetadata]:
        out = []
        for identifier in sorted(diffs.identifiers()):
            wiki, ns = parse_snapshot_identifier(identifier)
            if not allowed(principal, FEED, wiki, ns):
                continue
            for ref in diffs.refs(identifier):
                try:
                    out.append(diff_view(diffs.manifest(identifier, ref.version)))
                except DiffNotFound:  # retired while listing
                    continue
        return out

    items = select(await anyio.to_thread.run_sync(views), query)
    return await metered.metadata(request, principal, FEED, None, items, many=True)


@route("/{identifier:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(DiffMetadata,
                                                        "The latest diff, or ?version="))
async def get_diff(request: Request[Any, Any, Any], principal: PrincipalDep,
                   diffs: Injected[DiffStore], metered: Injected[Metered], identifier: SnapshotId,
                   version: VersionParam = None) -> Response[bytes]:
    query = await read_query(request)
    wiki, m = await _manifest(diffs, principal, identifier, version)
    refs = await anyio.to_thread.run_sync(diffs.refs, identifier)
    view = msgspec.to_builtins(diff_view(m, [r.version for r in refs]))
    return await metered.metadata(request, principal, FEED, wiki, project(view, query.fields),
                                  many=False)


@route("/{identifier:str}/manifest", http_method=["GET"], status_code=200,
       dependencies=PRINCIPAL, responses=_MANIFEST)
async def get_manifest(request: Request[Any, Any, Any], principal: PrincipalDep,
                       diffs: Injected[DiffStore], metered: Injected[Metered],
                       identifier: SnapshotId, version: VersionParam = None) -> Response[bytes]:
    """The full diff manifest, as stored (what ``feedserver diff apply --manifest`` reads)."""
    wiki, m = await _manifest(diffs, principal, identifier, version)
    headers = await metered.billing.admit(principal, FEED, wiki)
    body = ENCODER.encode(m)
    metered.billing.report(request, principal, feed=FEED, project=wiki, bytes_sent=len(body))
    return Response(body, media_type="application/json", headers=headers)


@route("/{identifier:str}/download", http_method=["GET", "HEAD"], dependencies=PRINCIPAL,
       responses=DOWNLOAD_RESPONSES)
async def download_diff(request: Request[Any, Any, Any], principal: PrincipalDep,
                        diffs: Injected[DiffStore], metered: Injected[Metered],
                        identifier: SnapshotId, version: VersionParam = None) -> Response[Any]:
    wiki, m = await _manifest(diffs, principal, identifier, version)
    return await metered.chunks(
        request, principal, FEED, wiki, m.chunks, last_modified=m.date_modified,
        resource=f"{m.identifier}@{m.name}",
        sha256=m.sha256, filename=f"{m.identifier}_diff_{m.name}.ndjson.zst")


@route("/{identifier:str}/{pair:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(DiffMetadata, "The diff {base}-{version}"))
async def get_pair(request: Request[Any, Any, Any], principal: PrincipalDep,
                   diffs: Injected[DiffStore], metered: Injected[Metered], identifier: SnapshotId,
                   pair: Pair) -> Response[bytes]:
    """Metadata of the diff from version ``base`` to ``version`` (``/{base}-{version}``)."""
    query = await read_query(request)
    wiki, m = await _pair_manifest(diffs, principal, identifier, pair)
    return await metered.metadata(request, principal, FEED, wiki,
                                  project(msgspec.to_builtins(diff_view(m)), query.fields),
                                  many=False)


@route("/{identifier:str}/{pair:str}/manifest", http_method=["GET"], status_code=200,
       dependencies=PRINCIPAL, responses=_MANIFEST)
async def get_pair_manifest(request: Request[Any, Any, Any], principal: PrincipalDep,
                            diffs: Injected[DiffStore], metered: Injected[Metered],
                            identifier: SnapshotId, pair: Pair) -> Response[bytes]:
    """The full manifest of the diff ``{base}-{version}``."""
    wiki, m = await _pair_manifest(diffs, principal, identifier, pair)
    headers = await metered.billing.admit(principal, FEED, wiki)
    body = ENCODER.encode(m)
    metered.billing.report(request, principal, feed=FEED, project=wiki, bytes_sent=len(body))
    return Response(body, media_type="application/json", headers=headers)


@route("/{identifier:str}/{pair:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=DOWNLOAD_RESPONSES)
async def download_pair(request: Request[Any, Any, Any], principal: PrincipalDep,
                        diffs: Injected[DiffStore], metered: Injected[Metered],
                        identifier: SnapshotId, pair: Pair) -> Response[Any]:
    """The diff ``{base}-{version}``, whole (Range, ETag, 304 as every download)."""
    wiki, m = await _pair_manifest(diffs, principal, identifier, pair)
    return await metered.chunks(
        request, principal, FEED, wiki, m.chunks, last_modified=m.date_modified,
        resource=f"{m.identifier}@{m.name}",
        sha256=m.sha256, filename=f"{m.identifier}_diff_{m.name}.ndjson.zst")


def _missing(chunk_id: str) -> NotFound:
    return NotFound(f"chunk {chunk_id!r} not found")


@route("/{identifier:str}/chunks", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(list[DiffChunkMetadata],
                                                        "The diff's chunks"))
async def list_chunks(request: Request[Any, Any, Any], principal: PrincipalDep,
                      diffs: Injected[DiffStore], metered: Injected[Metered],
                      identifier: SnapshotId, version: VersionParam = None) -> Response[bytes]:
    query = await read_query(request)
    wiki, m = await _manifest(diffs, principal, identifier, version)
    return await chunks.list_chunks(request, principal, metered, FEED, wiki, m, query,
                                    chunk_view)


@route("/{identifier:str}/chunks/{chunk_id:str}", http_method=["GET", "POST"],
       status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(DiffChunkMetadata, "One chunk of the diff"))
async def get_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                    diffs: Injected[DiffStore], metered: Injected[Metered], identifier: SnapshotId,
                    chunk_id: ChunkId, version: VersionParam = None) -> Response[bytes]:
    query = await read_query(request)
    wiki, m = await _manifest(diffs, principal, identifier, version)
    return await chunks.get_chunk(request, principal, metered, FEED, wiki, m, query, chunk_id,
                                  chunk_view, _missing)


@route("/{identifier:str}/chunks/{chunk_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=DOWNLOAD_RESPONSES)
async def download_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                         diffs: Injected[DiffStore], metered: Injected[Metered],
                         identifier: SnapshotId, chunk_id: ChunkId, version: VersionParam = None
                         ) -> Response[Any]:
    wiki, m = await _manifest(diffs, principal, identifier, version)
    chunk = chunks.find_chunk(m, chunk_id, _missing)
    return await metered.chunks(
        request, principal, FEED, wiki, [chunk], last_modified=m.date_modified,
        resource=f"{chunk.identifier}@{m.name}",
        sha256=chunk.sha256, filename=f"{chunk.identifier}_diff_{m.name}.ndjson.zst")


def router() -> Router:
    return Router("/v2/diffs", route_handlers=[
        list_diffs, get_diff, get_manifest, download_diff, list_chunks, get_chunk,
        download_chunk, get_pair, get_pair_manifest, download_pair,
    ], tags=["diffs"])
