"""Structured Contents snapshots (WME's paths): ``/v2/snapshots/structured-contents``,
``/{identifier}``, ``HEAD|GET /{identifier}/download``, and (our extension, as for article
snapshots) ``/{identifier}/chunks[/{chunk}[/download]]``.

Versions of ``{wiki}_namespace_{ns}`` made of ``StructuredContent`` records (zstd NDJSON
chunks, manifest, checksums: ``feeds.snapshots.structured``), downloaded as WME's tar.gz by
default or zstd NDJSON by negotiation, as article snapshots (``negotiation``). The metadata
is the article snapshot's (``api.snapshots.snapshot_view``: WME's fields plus our exact
sizes, checksums and ``version_number``) plus ``structured``: the article version built
alongside and the parse outcome. ``name`` is accepted in ``fields`` and yields nothing: the
SDK's example asks for it.

Entitlement: the plan feed ``structured_contents`` (project and namespace from the identifier,
403 before anything is read). Usage: metered like article snapshots (feed ``snapshots``, and
``chunks`` for one chunk: the same download quotas), as WME counts its snapshot API; the
``resource`` of a download (``structured-contents/{identifier}@{version}``) tells them apart.
"""

from __future__ import annotations

from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, route
from litestar.openapi import ResponseSpec

from feedserver.accounts.models import Principal
from feedserver.api import chunks
from feedserver.api.auth import PRINCIPAL, PrincipalDep, allowed, entitle
from feedserver.api.fields import PathSet, check_paths
from feedserver.api.metered import ARCHIVE_RESPONSES, Metered
from feedserver.api.negotiation import (
    FormatParam,
    archive_downloads,
    chunk_downloads,
    negotiate,
    zstd_download,
)
from feedserver.api.params import ChunkId, SnapshotId
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import Injected, Snapshots
from feedserver.api.query import VersionParam, project, read_query, select
from feedserver.api.snapshots import CHUNK_PATHS, ChunkMetadata, SnapshotMetadata, chunk_view
from feedserver.api.snapshots import snapshot_view as article_snapshot_view
from feedserver.errors import SnapshotNotFound
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest, StructuredInfo
from feedserver.formats.checksums import Checksums
from feedserver.identifiers import parse_snapshot_identifier

FEED: Final = "structured_contents"
USAGE: Final = "snapshots"  # the usage feed of metadata and whole downloads


class StructuredSnapshotMetadata(SnapshotMetadata, kw_only=True, omit_defaults=True):
    """WME Structured Contents snapshot metadata (as article snapshots'), plus how it was
    made."""

    structured: StructuredInfo | None = None


PATHS = PathSet.of(StructuredSnapshotMetadata, ["name"])


def snapshot_view(m: Manifest, versions: list[int] | None = None) -> StructuredSnapshotMetadata:
    base = article_snapshot_view(m, versions)
    return StructuredSnapshotMetadata(**msgspec.structs.asdict(base), structured=m.structured)


def resource(m: Manifest) -> str:
    return f"{STRUCTURED_PREFIX}/{m.identifier}@{m.version}"


_ERRORS = problem_specs(400, 401, 403, 404, 413, 422, 429)


def _ok(kind: Any, description: str) -> dict[int, ResponseSpec]:
    return {**_ERRORS, 200: ResponseSpec(kind, description=description,
                                         generate_examples=False)}


async def _manifest(store: Snapshots, principal: Principal, identifier: str,
                    version: int | None) -> tuple[str, Manifest]:
    wiki, ns = parse_snapshot_identifier(identifier)
    entitle(principal, FEED, wiki, ns)
    return wiki, await anyio.to_thread.run_sync(store.manifest, identifier, version)


@route("/", http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=_ok(list[StructuredSnapshotMetadata],
                     "Structured Contents snapshots the plan covers (JSON or NDJSON)"))
async def list_structured(request: Request[Any, Any, Any], principal: PrincipalDep,
                          structured_snapshots: Injected[Snapshots], metered: Injected[Metered]
                          ) -> Response[bytes]:
    """List Structured Contents snapshots; ``fields``, ``filters`` (namespace.identifier,
    is_part_of.identifier, in_language.identifier), ``limit``."""
    query = check_paths(await read_query(request), PATHS)

    def views() -> list[StructuredSnapshotMetadata]:
        out = []
        for identifier in sorted(structured_snapshots.identifiers()):
            wiki, ns = parse_snapshot_identifier(identifier)
            if not allowed(principal, FEED, wiki, ns):
                continue
            try:
                out.append(snapshot_view(structured_snapshots.manifest(identifier)))
            except SnapshotNotFound:  # removed while listing
                continue
        return out

    items = select(await anyio.to_thread.run_sync(views), query)
    return await metered.metadata(request, principal, USAGE, None, items, many=True)


@route("/{identifier:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL,
       responses=_ok(StructuredSnapshotMetadata, "Structured Contents snapshot metadata"))
async def get_structured(request: Request[Any, Any, Any], principal: PrincipalDep,
                         structured_snapshots: Injected[Snapshots], metered: Injected[Metered],
                         identifier: SnapshotId, version: VersionParam = None
                         ) -> Response[bytes]:
    """One Structured Contents snapshot's metadata; ``?version=N``; ``fields``."""
    query = check_paths(await read_query(request), PATHS)
    wiki, m = await _manifest(structured_snapshots, principal, identifier, version)
    versions = await anyio.to_thread.run_sync(structured_snapshots.versions, identifier)
    item = project(msgspec.to_builtins(snapshot_view(m, versions)), query.fields)
    return await metered.metadata(request, principal, USAGE, wiki, item, many=False)


@route("/{identifier:str}/download", http_method=["GET", "HEAD"], dependencies=PRINCIPAL,
       responses=ARCHIVE_RESPONSES)
async def download_structured(request: Request[Any, Any, Any], principal: PrincipalDep,
                              structured_snapshots: Injected[Snapshots],
                              metered: Injected[Metered], identifier: SnapshotId,
                              version: VersionParam = None, fmt: FormatParam = None
                              ) -> Response[Any]:
    """The Structured Contents snapshot: WME's ``<id>.tar.gz`` (the default when built) or
    its zstd chunk files back to back (``Accept: application/zstd`` or ``?format=zstd``).
    Range, If-Range, If-None-Match; ``?version=N``."""
    wiki, m = await _manifest(structured_snapshots, principal, identifier, version)
    zstd = zstd_download(m.chunks, Checksums(size=int(m.size.value), sha256=m.sha256),
                         f"{m.identifier}_structured_v{m.version}.ndjson.zst")
    downloads = archive_downloads(m.identifier, m.chunks, m.representations, zstd=zstd,
                                  filename=f"{m.identifier}.tar.gz")
    chosen = negotiate(downloads, request.headers.get("accept"), fmt)
    return await metered.representation(request, principal, USAGE, wiki, chosen,
                                        last_modified=m.date_modified, resource=resource(m))


@route("/{identifier:str}/chunks", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=_ok(list[ChunkMetadata], "The snapshot's chunks"))
async def list_structured_chunks(request: Request[Any, Any, Any], principal: PrincipalDep,
                                 structured_snapshots: Injected[Snapshots],
                                 metered: Injected[Metered], identifier: SnapshotId,
                                 version: VersionParam = None) -> Response[bytes]:
    """Chunk metadata of a Structured Contents snapshot version; ``fields``, ``filters``,
    ``limit``."""
    query = check_paths(await read_query(request), CHUNK_PATHS)
    wiki, m = await _manifest(structured_snapshots, principal, identifier, version)
    return await chunks.list_chunks(request, principal, metered, USAGE, wiki, m, query,
                                    chunk_view)


@route("/{identifier:str}/chunks/{chunk_id:str}", http_method=["GET", "POST"],
       status_code=200, dependencies=PRINCIPAL, responses=_ok(ChunkMetadata, "Chunk metadata"))
async def get_structured_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                               structured_snapshots: Injected[Snapshots],
                               metered: Injected[Metered], identifier: SnapshotId,
                               chunk_id: ChunkId, version: VersionParam = None
                               ) -> Response[bytes]:
    """One chunk, by identifier or index."""
    query = check_paths(await read_query(request), CHUNK_PATHS)
    wiki, m = await _manifest(structured_snapshots, principal, identifier, version)
    return await chunks.get_chunk(request, principal, metered, USAGE, wiki, m, query,
                                  chunk_id, chunk_view, SnapshotNotFound)


@route("/{identifier:str}/chunks/{chunk_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=ARCHIVE_RESPONSES)
async def download_structured_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                                    structured_snapshots: Injected[Snapshots],
                                    metered: Injected[Metered], identifier: SnapshotId,
                                    chunk_id: ChunkId, version: VersionParam = None,
                                    fmt: FormatParam = None) -> Response[Any]:
    """One chunk: ``chunk_<k>.tar.gz`` (the default when built) or its zstd file; same
    negotiation, Range and ETag support as the snapshot."""
    wiki, m = await _manifest(structured_snapshots, principal, identifier, version)
    chunk = chunks.find_chunk(m, chunk_id, SnapshotNotFound)
    zstd = zstd_download([chunk], Checksums(size=chunk.size, sha256=chunk.sha256),
                         f"{chunk.identifier}_structured_v{m.version}.ndjson.zst")
    chosen = negotiate(chunk_downloads(chunk, zstd=zstd), request.headers.get("accept"), fmt)
    return await metered.representation(
        request, principal, "chunks", wiki, chosen, last_modified=m.date_modified,
        resource=f"{STRUCTURED_PREFIX}/{chunk.identifier}@{m.version}")


def router() -> Router:
    return Router("/v2/snapshots/structured-contents", route_handlers=[
        list_structured, get_structured, download_structured, list_structured_chunks,
        get_structured_chunk, download_structured_chunk,
    ], tags=["structured contents"])
