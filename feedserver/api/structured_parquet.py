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

from typing import Any

from litestar import Request, Response, Router, route

from feedserver.api.auth import PRINCIPAL, PrincipalDep
from feedserver.api.metered import Metered
from feedserver.api.params import ShardId, SnapshotId
from feedserver.api.parquet import (
    DOWNLOAD,
    ShardMetadata,
    download_version_shard,
    list_version_shards,
    one_version_shard,
)
from feedserver.api.problems import feed_responses
from feedserver.api.protocols import Injected, Snapshots
from feedserver.api.query import VersionParam
from feedserver.api.structured_snapshots import STRUCTURED
from feedserver.api.verified import VerifiedBlobs

_PATH = "/{identifier:str}/parquet"


@route(_PATH, http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses=feed_responses(list[ShardMetadata], "The version's Parquet shards (structured/1)"))
async def list_structured_shards(request: Request[Any, Any, Any], principal: PrincipalDep,
                                 structured_snapshots: Injected[Snapshots],
                                 metered: Injected[Metered], identifier: SnapshotId,
                                 version: VersionParam = None) -> Response[bytes]:
    """Parquet shards of a Structured Contents version (``?version=N``); ``fields``,
    ``filters``, ``limit``. 404 ``parquet-not-built`` when the version has none."""
    return await list_version_shards(STRUCTURED, structured_snapshots, request, principal,
                                     metered, identifier, version)


@route(_PATH + "/{shard_id:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL, responses=feed_responses(ShardMetadata, "One Parquet shard"))
async def get_structured_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                               structured_snapshots: Injected[Snapshots],
                               metered: Injected[Metered], identifier: SnapshotId,
                               shard_id: ShardId, version: VersionParam = None
                               ) -> Response[bytes]:
    """One shard's metadata, by index or identifier."""
    return await one_version_shard(STRUCTURED, structured_snapshots, request, principal,
                                   metered, identifier, shard_id, version)


@route(_PATH + "/{shard_id:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=DOWNLOAD)
async def download_structured_shard(request: Request[Any, Any, Any], principal: PrincipalDep,
                                    structured_snapshots: Injected[Snapshots],
                                    metered: Injected[Metered],
                                    verified_blobs: Injected[VerifiedBlobs],
                                    identifier: SnapshotId, shard_id: ShardId,
                                    version: VersionParam = None) -> Response[Any]:
    """The shard file: Range (a footer, a column chunk), If-Range, If-None-Match, HEAD."""
    return await download_version_shard(STRUCTURED, structured_snapshots, request, principal,
                                        metered, verified_blobs, identifier, shard_id, version)


def router() -> Router:
    return Router(STRUCTURED.base, route_handlers=[
        list_structured_shards, get_structured_shard, download_structured_shard,
    ], tags=["structured contents", "parquet"])
