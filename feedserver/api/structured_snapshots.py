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

import msgspec
from litestar import Request, Response, Router, route

from feedserver.api.auth import PRINCIPAL, PrincipalDep
from feedserver.api.fields import PathSet
from feedserver.api.metered import ARCHIVE_RESPONSES, Metered
from feedserver.api.negotiation import FormatParam
from feedserver.api.params import ChunkId, SnapshotId
from feedserver.api.problems import feed_responses
from feedserver.api.protocols import Injected, Snapshots
from feedserver.api.query import VersionParam
from feedserver.api.snapshots import (
    ChunkMetadata,
    SnapshotFeed,
    SnapshotMetadata,
    download_version,
    download_version_chunk,
    list_version_chunks,
    list_versions,
    one_version,
    one_version_chunk,
)
from feedserver.api.snapshots import snapshot_view as article_snapshot_view
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest, StructuredInfo


class StructuredSnapshotMetadata(SnapshotMetadata, kw_only=True, omit_defaults=True):
    """WME Structured Contents snapshot metadata (as article snapshots'), plus how it was
    made."""

    structured: StructuredInfo | None = None


PATHS = PathSet.of(StructuredSnapshotMetadata, ["name"])


def snapshot_view(m: Manifest, versions: list[int] | None = None) -> StructuredSnapshotMetadata:
    base = article_snapshot_view(m, versions)
    return StructuredSnapshotMetadata(**msgspec.structs.asdict(base), structured=m.structured)


STRUCTURED: Final = SnapshotFeed(
    feed="structured_contents", base="/v2/snapshots/structured-contents",
    title="Structured Contents snapshot", view=snapshot_view, paths=PATHS,
    zstd_infix="_structured", ledger_prefix=f"{STRUCTURED_PREFIX}/", export_flag=" --structured")


@route("/", http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(list[StructuredSnapshotMetadata],
                     "Structured Contents snapshots the plan covers (JSON or NDJSON)"))
async def list_structured(request: Request[Any, Any, Any], principal: PrincipalDep,
                          structured_snapshots: Injected[Snapshots], metered: Injected[Metered]
                          ) -> Response[bytes]:
    """List Structured Contents snapshots; ``fields``, ``filters`` (namespace.identifier,
    is_part_of.identifier, in_language.identifier), ``limit``."""
    return await list_versions(STRUCTURED, structured_snapshots, request, principal, metered)


@route("/{identifier:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL,
       responses=feed_responses(StructuredSnapshotMetadata,
                                "Structured Contents snapshot metadata"))
async def get_structured(request: Request[Any, Any, Any], principal: PrincipalDep,
                         structured_snapshots: Injected[Snapshots], metered: Injected[Metered],
                         identifier: SnapshotId, version: VersionParam = None
                         ) -> Response[bytes]:
    """One Structured Contents snapshot's metadata; ``?version=N``; ``fields``."""
    return await one_version(STRUCTURED, structured_snapshots, request, principal, metered,
                             identifier, version)


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
    return await download_version(STRUCTURED, structured_snapshots, request, principal,
                                  metered, identifier, version, fmt)


@route("/{identifier:str}/chunks", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(list[ChunkMetadata],
                                                        "The snapshot's chunks"))
async def list_structured_chunks(request: Request[Any, Any, Any], principal: PrincipalDep,
                                 structured_snapshots: Injected[Snapshots],
                                 metered: Injected[Metered], identifier: SnapshotId,
                                 version: VersionParam = None) -> Response[bytes]:
    """Chunk metadata of a Structured Contents snapshot version; ``fields``, ``filters``,
    ``limit``."""
    return await list_version_chunks(STRUCTURED, structured_snapshots, request, principal,
                                     metered, identifier, version)


@route("/{identifier:str}/chunks/{chunk_id:str}", http_method=["GET", "POST"],
       status_code=200, dependencies=PRINCIPAL, responses=feed_responses(ChunkMetadata,
                                                                         "Chunk metadata"))
async def get_structured_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                               structured_snapshots: Injected[Snapshots],
                               metered: Injected[Metered], identifier: SnapshotId,
                               chunk_id: ChunkId, version: VersionParam = None
                               ) -> Response[bytes]:
    """One chunk, by identifier or index."""
    return await one_version_chunk(STRUCTURED, structured_snapshots, request, principal,
                                   metered, identifier, chunk_id, version)


@route("/{identifier:str}/chunks/{chunk_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=ARCHIVE_RESPONSES)
async def download_structured_chunk(request: Request[Any, Any, Any], principal: PrincipalDep,
                                    structured_snapshots: Injected[Snapshots],
                                    metered: Injected[Metered], identifier: SnapshotId,
                                    chunk_id: ChunkId, version: VersionParam = None,
                                    fmt: FormatParam = None) -> Response[Any]:
    """One chunk: ``chunk_<k>.tar.gz`` (the default when built) or its zstd file; same
    negotiation, Range and ETag support as the snapshot."""
    return await download_version_chunk(STRUCTURED, structured_snapshots, request, principal,
                                        metered, identifier, chunk_id, version, fmt)


def router() -> Router:
    return Router("/v2/snapshots/structured-contents", route_handlers=[
        list_structured, get_structured, download_structured, list_structured_chunks,
        get_structured_chunk, download_structured_chunk,
    ], tags=["structured contents"])
