"""Parquet shards of snapshot versions and diffs, served under them like chunks.

::

    GET|POST  /v2/snapshots/{id}/parquet[?version=N]                  the shards' metadata
    GET|POST  /v2/snapshots/{id}/parquet/{shard}[?version=N]          one shard (index or id)
    GET|HEAD  /v2/snapshots/{id}/parquet/{shard}/download[?version=N] the file (Range, ETag)
    ... and the same under /v2/diffs/{id}/parquet (the diff ending at ?version=N)

Entitlement: the plan's feed (``snapshots`` or ``diffs``), project and namespace, checked from
the identifier before anything is read, and the ``parquet`` format (``Plan.formats``).
Metering as every download: a body GET bills the bytes actually sent, so a reader that
fetches the footer and one column chunk by ``Range`` pays for those bytes alone; a snapshot
shard counts as a chunk download (``chunk_downloads`` quota), a diff shard as a diff one.
A shard is hashed against the manifest before its first byte is served (``verified``): a
damaged one is refused (integrity-error problem), never served. A version or diff published
without Parquet answers 404 ``parquet-not-built``, saying where the same data is and how
Parquet gets published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, route
from litestar.openapi import ResponseSpec

from feedserver.accounts.models import Principal
from feedserver.api.auth import PRINCIPAL, PrincipalDep, entitle
from feedserver.api.fields import PathSet, check_paths
from feedserver.api.metered import DOWNLOAD_RESPONSES, Metered
from feedserver.api.params import ShardId, SnapshotId
from feedserver.api.problems import feed_responses, problem_specs
from feedserver.api.protocols import Injected, Snapshots
from feedserver.api.query import VersionParam, project, read_query, select
from feedserver.api.ranges import Part
from feedserver.api.snapshots import ARTICLES, NamespaceRef, Ref, SizeMB, SnapshotFeed
from feedserver.api.verified import VerifiedBlobs
from feedserver.errors import NotFound
from feedserver.feeds.diffs.manifest import DiffManifest
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.feeds.snapshots.shards import MEDIA_TYPE, ParquetNotBuilt, ParquetSet, ParquetShard
from feedserver.identifiers import parse_snapshot_identifier
from feedserver.plans import Feed, ProductFeed

FORMAT: Final = "parquet"


class ShardMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One Parquet shard of a snapshot version or of a diff."""

    identifier: str  # {snapshot}_shard_{k}
    filename: str  # identifier + ".parquet"
    index: int
    version: str  # the shard's SHA-256 (as a chunk's ``version``)
    date_modified: datetime
    is_part_of: Ref
    namespace: NamespaceRef
    size: SizeMB
    size_bytes: int
    rows: int
    row_groups: int
    sha256: str
    schema: str  # "articles/1" (snapshots), "diff/1" (diffs: ``op`` first), "structured/1"
    snapshot: str
    version_number: int
    base_version: int | None = None  # diffs: the version the diff starts from


SHARD_PATHS = PathSet.of(ShardMetadata)
Published = Manifest | DiffManifest


def _base(m: Published) -> int | None:
    return m.base_version if isinstance(m, DiffManifest) else None


def shard_view(m: Published, parquet: ParquetSet, s: ParquetShard) -> ShardMetadata:
    return ShardMetadata(
        identifier=s.identifier, filename=s.filename, index=s.index, version=s.sha256,
        date_modified=m.date_modified, is_part_of=Ref(m.is_part_of.identifier),
        namespace=NamespaceRef(m.namespace.identifier), size=SizeMB(round(s.size / 1e6, 3)),
        size_bytes=s.size, rows=s.rows, row_groups=s.row_groups, sha256=s.sha256,
        schema=parquet.schema, snapshot=m.identifier, version_number=m.version,
        base_version=_base(m))


DOWNLOAD = {
    **DOWNLOAD_RESPONSES, **problem_specs(500),
    200: ResponseSpec(None, description="The shard (application/vnd.apache.parquet); ETag, "
                      "Repr-Digest, Accept-Ranges", media_type=MEDIA_TYPE),
    206: ResponseSpec(None, description="One range (Content-Range) or several "
                      "(multipart/byteranges): a footer, a column chunk", media_type=MEDIA_TYPE),
}


def entitle_parquet(principal: Principal, feed: ProductFeed, identifier: str) -> str:
    wiki, ns = parse_snapshot_identifier(identifier)
    entitle(principal, feed, wiki, ns)
    principal.plan.entitlements.check_format(FORMAT)
    return wiki


def _versions_with_parquet(snapshots: Snapshots, identifier: str) -> list[int]:
    out = []
    for version in snapshots.versions(identifier):
        try:
            if snapshots.manifest(identifier, version).parquet is not None:
                out.append(version)
        except NotFound:  # retired while looking
            continue
    return out


def _not_built(feed: SnapshotFeed, store: Snapshots, m: Manifest) -> ParquetNotBuilt:
    others = _versions_with_parquet(store, m.identifier)
    where = (f"Versions with Parquet: {', '.join(map(str, others))} (?version=N). " if others
             else "No retained version has Parquet. ")
    how = (f"{where}The same records are served as zstd NDJSON at "
           f"{feed.base}/{m.identifier}/download?version={m.version}. Parquet is published "
           "for each version built with FEEDSERVER_PARQUET_ENABLED=true (ask your provider); "
           f"`feedserver snapshot export {m.identifier}{feed.export_flag} --version {m.version} "
           "--format parquet -o DIR` converts a version offline.")
    return ParquetNotBuilt(f"{feed.title} {m.identifier} version {m.version}", how=how,
                           identifier=m.identifier, version=m.version)


def _diff_not_built(m: DiffManifest) -> ParquetNotBuilt:
    how = (f"Diffs get Parquet when version {m.version} has it. The same entries are served "
           f"as zstd NDJSON at /v2/diffs/{m.identifier}/{m.name}/download.")
    return ParquetNotBuilt(f"diff {m.identifier} {m.name}", how=how, identifier=m.identifier,
                           version=m.version)


async def _snapshot(feed: SnapshotFeed, store: Snapshots, principal: Principal,
                    identifier: str, version: int | None) -> tuple[str, Manifest, ParquetSet]:
    wiki = entitle_parquet(principal, feed.feed, identifier)

    def load() -> tuple[Manifest, ParquetSet]:
        m = store.manifest(identifier, version)
        if m.parquet is None:
            raise _not_built(feed, store, m)
        return m, m.parquet

    m, parquet = await anyio.to_thread.run_sync(load)
    return wiki, m, parquet


async def _diff(diffs: DiffStore, principal: Principal, identifier: str, version: int | None
                ) -> tuple[str, DiffManifest, ParquetSet]:
    wiki = entitle_parquet(principal, "diffs", identifier)
    m = await anyio.to_thread.run_sync(diffs.manifest, identifier, version)
    if m.parquet is None:
        raise _diff_not_built(m)
    return wiki, m, m.parquet


def find_shard(parquet: ParquetSet, m: Published, ref: str) -> ParquetShard:
    shard = parquet.shard(ref)
    if shard is None or not shard.identifier.startswith(m.identifier + "_shard_"):
        raise NotFound(f"Parquet shard {ref!r} not found in {m.identifier} "
                       f"({len(parquet.shards)} shards)", identifier=m.identifier)
    return shard


async def list_shards(request: Request[Any, Any, Any], principal: Principal, metered: Metered,
                feed: Feed, wiki: str, m: Published, parquet: ParquetSet) -> Response[bytes]:
    query = check_paths(await read_query(request), SHARD_PATHS)
    items = select([shard_view(m, parquet, s) for s in parquet.shards], query)
    return await metered.metadata(request, principal, feed, wiki, items, many=True)


async def one_shard(request: Request[Any, Any, Any], principal: Principal, metered: Metered,
               feed: Feed, wiki: str, m: Published, parquet: ParquetSet, ref: str
               ) -> Response[bytes]:
    query = check_paths(await read_query(request), SHARD_PATHS)
    item = project(msgspec.to_builtins(shard_view(m, parquet, find_shard(parquet, m, ref))),
                   query.fields)
    return await metered.metadata(request, principal, feed, wiki, item, many=False)


async def download_shard(request: Request[Any, Any, Any], principal: Principal, metered: Metered,
                    verified: VerifiedBlobs, feed: Feed, wiki: str, m: Published,
                    parquet: ParquetSet, ref: str, *, at: str, resource_prefix: str = ""
                    ) -> Response[Any]:
    """A shard file (``resource_prefix``: tells other shard kinds apart in the ledger)."""
    shard = find_shard(parquet, m, ref)
    if request.method == "GET":  # HEAD sends no byte; its headers come from the manifest
        await verified.check(shard.key, shard.size, shard.sha256)
    return await metered.download(
        request, principal, feed, wiki, parts=[Part(shard.key, 0, shard.size)],
        size=shard.size, sha256=shard.sha256, last_modified=m.date_modified,
        filename=f"{shard.identifier}_{at}.parquet",
        resource=f"{resource_prefix}{shard.filename}@{at}",
        media_type=MEDIA_TYPE)


async def list_version_shards(feed: SnapshotFeed, store: Snapshots,
                              request: Request[Any, Any, Any], principal: Principal,
                              metered: Metered, identifier: str, version: int | None
                              ) -> Response[bytes]:
    """The Parquet shards of a snapshot version of ``feed``, metered under ``snapshots``."""
    wiki, m, parquet = await _snapshot(feed, store, principal, identifier, version)
    return await list_shards(request, principal, metered, "snapshots", wiki, m, parquet)


async def one_version_shard(feed: SnapshotFeed, store: Snapshots,
                            request: Request[Any, Any, Any], principal: Principal,
                            metered: Metered, identifier: str, shard_id: str,
                            version: int | None) -> Response[bytes]:
    """One shard's metadata of a snapshot version of ``feed``."""
    wiki, m, parquet = await _snapshot(feed, store, principal, identifier, version)
    return await one_shard(request, principal, metered, "snapshots", wiki, m, parquet, shard_id)


async def download_version_shard(feed: SnapshotFeed, store: Snapshots,
                                 request: Request[Any, Any, Any], principal: Principal,
                                 metered: Metered, verified: VerifiedBlobs, identifier: str,
                                 shard_id: str, version: int | None) -> Response[Any]:
    """A shard file of a snapshot version of ``feed``, metered as a chunk download."""
    wiki, m, parquet = await _snapshot(feed, store, principal, identifier, version)
    return await download_shard(request, principal, metered, verified, "chunks", wiki, m,
                                parquet, shard_id, at=f"v{m.version}",
                                resource_prefix=feed.ledger_prefix)


# --- snapshots ---------------------------------------------------------------------------------

_SNAPSHOT = "/snapshots/{identifier:str}/parquet"


@route(_SNAPSHOT, http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(list[ShardMetadata], "The version's Parquet shards"))
async def list_snapshot_shards(request: Request[Any, Any, Any], principal: PrincipalDep,
                               snapshots: Injected[Snapshots], metered: Injected[Metered],
                               identifier: SnapshotId, version: VersionParam = None
                               ) -> Response[bytes]:
    """Parquet shards of a snapshot version (``?version=N``); ``fields``, ``filters``,
    ``limit``. 404 ``parquet-not-built`` when the version has none."""
    return await list_version_shards(ARTICLES, snapshots, request, principal, metered,
                                     identifier, version)


@route(_SNAPSHOT + "/{shard_id:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(ShardMetadata, "One Parquet shard"))
async def get_snapshot_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                             snapshots: Injected[Snapshots], metered: Injected[Metered],
                             identifier: SnapshotId, shard_id: ShardId,
                             version: VersionParam = None) -> Response[bytes]:
    """One shard's metadata, by index or identifier."""
    return await one_version_shard(ARTICLES, snapshots, request, principal, metered,
                                   identifier, shard_id, version)


@route(_SNAPSHOT + "/{shard_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=DOWNLOAD)
async def download_snapshot_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                                  snapshots: Injected[Snapshots], metered: Injected[Metered],
                                  verified_blobs: Injected[VerifiedBlobs],
                                  identifier: SnapshotId, shard_id: ShardId,
                                  version: VersionParam = None) -> Response[Any]:
    """The shard file: Range (a footer, a column chunk), If-Range, If-None-Match, HEAD."""
    return await download_version_shard(ARTICLES, snapshots, request, principal, metered,
                                        verified_blobs, identifier, shard_id, version)


# --- diffs -------------------------------------------------------------------------------------

_DIFF = "/diffs/{identifier:str}/parquet"


@route(_DIFF, http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(list[ShardMetadata], "The diff's Parquet shards"))
async def list_diff_shards(request: Request[Any, Any, Any], principal: PrincipalDep,
                           diffs: Injected[DiffStore], metered: Injected[Metered],
                           identifier: SnapshotId, version: VersionParam = None
                           ) -> Response[bytes]:
    """Parquet shards of the diff ending at ``?version=N`` (default: the latest diff)."""
    wiki, m, parquet = await _diff(diffs, principal, identifier, version)
    return await list_shards(request, principal, metered, "diffs", wiki, m, parquet)


@route(_DIFF + "/{shard_id:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(ShardMetadata,
                                                        "One Parquet shard of the diff"))
async def get_diff_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                         diffs: Injected[DiffStore], metered: Injected[Metered],
                         identifier: SnapshotId, shard_id: ShardId,
                         version: VersionParam = None) -> Response[bytes]:
    wiki, m, parquet = await _diff(diffs, principal, identifier, version)
    return await one_shard(request, principal, metered, "diffs", wiki, m, parquet, shard_id)


@route(_DIFF + "/{shard_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=DOWNLOAD)
async def download_diff_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                              diffs: Injected[DiffStore], metered: Injected[Metered],
                              verified_blobs: Injected[VerifiedBlobs],
                              identifier: SnapshotId, shard_id: ShardId,
                              version: VersionParam = None) -> Response[Any]:
    wiki, m, parquet = await _diff(diffs, principal, identifier, version)
    return await download_shard(request, principal, metered, verified_blobs, "diffs", wiki, m,
                           parquet, shard_id, at=f"diff_{m.name}")


def router() -> Router:
    return Router("/v2", route_handlers=[
        list_snapshot_shards, get_snapshot_shard, download_snapshot_shard,
        list_diff_shards, get_diff_shard, download_diff_shard,
    ], tags=["parquet"])
