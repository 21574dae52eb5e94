"""Parquet shards of Structured Contents snapshot versions, served like article shards::

    GET|POST  /v2/snapshots/structured-contents/{id}/parquet[?version=N]           the shards
    GET|POST  /v2/snapshots/structured-contents/{id}/parquet/{shard}[?version=N]   one shard
    GET|HEAD  /v2/snapshots/structured-contents/{id}/parquet/{shard}/download      the file

Rows of schema ``structured/1`` (``feeds.snapshots.structured_rows``). Entitlement: the plan
feed ``structured_contents`` (project and namespace from the identifier) and the ``parquet``
format, checked before anything is read. Metering as Structured Contents chunks: metadata
under ``snapshots``, a shard body as a chunk download (``chunk_downloads``), billed to the
byte sent (a range read pays for its ranges); the ledger's resource is
``structured-contents/{id}_shard_{k}.parquet@v{N}``. A shard is hashed against the manifest
before its first byte is served (``verified``). A version published without Parquet answers
404 ``parquet-not-built``.
"""

from __future__ import annotations

from typing import Any, Final

import anyio.to_thread
from litestar import Request, Response, Router, route
from litestar.openapi import ResponseSpec

from feedserver.accounts.models import Principal
from feedserver.api.auth import PRINCIPAL, PrincipalDep
from feedserver.api.metered import Metered
from feedserver.api.params import ShardId, SnapshotId
from feedserver.api.parquet import (
    DOWNLOAD,
    ShardMetadata,
    download_shard,
    entitle_parquet,
    list_shards,
    one_shard,
)
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import Injected, Snapshots
from feedserver.api.query import VersionParam
from feedserver.api.verified import VerifiedBlobs
from feedserver.errors import NotFound
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest
from feedserver.feeds.snapshots.shards import ParquetNotBuilt, ParquetSet

FEED: Final = "structured_contents"
USAGE: Final = "snapshots"  # metadata, as the other Structured Contents snapshot endpoints
BASE: Final = "/v2/snapshots/structured-contents"

_ERRORS = problem_specs(400, 401, 403, 404, 413, 422, 429)


def _ok(kind: Any, description: str) -> dict[int, ResponseSpec]:
    return {**_ERRORS, 200: ResponseSpec(kind, description=description,
                                         generate_examples=False)}


def _not_built(store: Snapshots, m: Manifest) -> ParquetNotBuilt:
    others = []
    for version in store.versions(m.identifier):
        try:
            if store.manifest(m.identifier, version).parquet is not None:
                others.append(version)
        except NotFound:  # retired while looking
            continue
    where = (f"Versions with Parquet: {', '.join(map(str, others))} (?version=N). " if others
             else "No retained version has Parquet. ")
    how = (f"{where}The same records are served as zstd NDJSON at "
           f"{BASE}/{m.identifier}/download?version={m.version}. Parquet is published for "
           "each version built with FEEDSERVER_PARQUET_ENABLED=true (ask your provider); "
           f"`feedserver snapshot export {m.identifier} --structured --version {m.version} "
           "--format parquet -o DIR` converts a version offline.")
    return ParquetNotBuilt(f"Structured Contents snapshot {m.identifier} version {m.version}",
                           how=how, identifier=m.identifier, version=m.version)


async def _load(store: Snapshots, principal: Principal, identifier: str,
                version: int | None) -> tuple[str, Manifest, ParquetSet]:
    wiki = entitle_parquet(principal, FEED, identifier)

    def load() -> tuple[Manifest, ParquetSet]:
        m = store.manifest(identifier, version)
        if m.parquet is None:
            raise _not_built(store, m)
        return m, m.parquet

    m, parquet = await anyio.to_thread.run_sync(load)
    return wiki, m, parquet


_PATH = "/{identifier:str}/parquet"


@route(_PATH, http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=_ok(list[ShardMetadata], "The version's Parquet shards (structured/1)"))
async def list_structured_shards(request: Request[Any, Any, Any], principal: PrincipalDep,
                                 structured_snapshots: Injected[Snapshots],
                                 metered: Injected[Metered], identifier: SnapshotId,
                                 version: VersionParam = None) -> Response[bytes]:
    """Parquet shards of a Structured Contents version (``?version=N``); ``fields``,
    ``filters``, ``limit``. 404 ``parquet-not-built`` when the version has none."""
    wiki, m, parquet = await _load(structured_snapshots, principal, identifier, version)
    return await list_shards(request, principal, metered, USAGE, wiki, m, parquet)


@route(_PATH + "/{shard_id:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=_ok(ShardMetadata, "One Parquet shard"))
async def get_structured_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                               structured_snapshots: Injected[Snapshots],
                               metered: Injected[Metered], identifier: SnapshotId,
                               shard_id: ShardId, version: VersionParam = None
                               ) -> Response[bytes]:
    """One shard's metadata, by index or identifier."""
    wiki, m, parquet = await _load(structured_snapshots, principal, identifier, version)
    return await one_shard(request, principal, metered, USAGE, wiki, m, parquet, shard_id)


@route(_PATH + "/{shard_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=DOWNLOAD)
async def download_structured_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                                    structured_snapshots: Injected[Snapshots],
                                    metered: Injected[Metered],
                                    verified_blobs: Injected[VerifiedBlobs],
                                    identifier: SnapshotId, shard_id: ShardId,
                                    version: VersionParam = None) -> Response[Any]:
    """The shard file: Range (a footer, a column chunk), If-Range, If-None-Match, HEAD."""
    wiki, m, parquet = await _load(structured_snapshots, principal, identifier, version)
    return await download_shard(request, principal, metered, verified_blobs, "chunks", wiki,
                                m, parquet, shard_id, at=f"v{m.version}",
                                resource_prefix=f"{STRUCTURED_PREFIX}/")


def router() -> Router:
    return Router(BASE, route_handlers=[
        list_structured_shards, get_structured_shard, download_structured_shard,
    ], tags=["structured contents", "parquet"])
