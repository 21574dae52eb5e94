"""Hourly batch endpoints (``/v2/batches/{date}/{hour}``): list, metadata, download.

Shaped like ``/v2/snapshots`` (same query handling, entitlements, metering seam and download
code: ``downloads.serve`` gives HEAD, ETag/304, single and multiple Ranges, and the presigned
307 redirect when snapshots use it). ``date`` is ``YYYY-MM-DD`` and ``hour`` ``00``..``23``
(UTC); the hour is the time the Article events entered the feed (see
``feeds/batches/hours.py``). The metadata object is a snapshot's without ``chunks`` (as WME),
plus ``date``, ``hour`` and ``event_counts``. As for snapshots, the download is WME's
``<id>.tar.gz`` by default (when built) or zstd NDJSON (``Accept: application/zstd`` or
``?format=zstd``), and ``version``/``size``/``size_bytes``/``sha256`` describe the default one
(``version`` = MD5 of the tar.gz, as WME's); ``formats`` lists both.

A malformed date, hour or identifier is a 422 before anything is read (the patterns are in the
OpenAPI document; a well-formed date that does not exist, 2026-02-30, is a 404); entitlement (feed
``batches``, project, namespace) is checked from the identifier before the batch is looked
up, so callers learn nothing about batches outside their plan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, route

from feedserver.accounts.models import Principal
from feedserver.api.auth import PRINCIPAL, PrincipalDep, allowed, entitle
from feedserver.api.fields import PathSet, check_paths
from feedserver.api.metered import ARCHIVE_RESPONSES, Metered
from feedserver.api.negotiation import (
    FormatParam,
    archive_downloads,
    negotiate,
    zstd_download,
)
from feedserver.api.params import BatchDate, BatchHour, SnapshotId
from feedserver.api.problems import feed_responses
from feedserver.api.protocols import Injected
from feedserver.api.query import project, read_query, select
from feedserver.api.snapshots import FormatInfo, NamespaceRef, Ref, SizeMB, formats_info
from feedserver.errors import InvalidParameter, NotFound
from feedserver.feeds.batches.hours import label, parse_date_hour
from feedserver.feeds.batches.store import BatchManifest, read_batch, read_hour
from feedserver.feeds.snapshots.manifest import wme_archive
from feedserver.formats.checksums import Checksums
from feedserver.identifiers import parse_snapshot_identifier
from feedserver.storage.blobs import BlobStore

FEED: Final = "batches"


class BatchMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    """WME batch metadata (a snapshot's without ``chunks``), plus sizes and checksums."""

    identifier: str
    version: str  # MD5 of the tar.gz, as WME's (without it: the content root hash)
    date_modified: datetime
    is_part_of: Ref
    in_language: Ref | None = None
    namespace: NamespaceRef
    size: SizeMB
    date: str
    hour: str
    size_bytes: int
    uncompressed_size: int
    article_count: int
    event_counts: dict[str, int]
    sha256: str  # of the default download's bytes; its ETag
    content_root_hash: str
    formats: list[FormatInfo] = msgspec.field(default_factory=list)


BATCH_PATHS = PathSet.of(BatchMetadata)


def batch_view(m: BatchManifest) -> BatchMetadata:
    wme = wme_archive(m.representations)
    formats = formats_info(None if wme is None else wme.archive,
                           Checksums(size=int(m.size.value), sha256=m.sha256))
    default = formats[0]
    return BatchMetadata(
        identifier=m.identifier, version=default.md5 or m.content_root_hash,
        date_modified=m.date_modified, is_part_of=Ref(m.is_part_of.identifier),
        in_language=None if m.in_language is None else Ref(m.in_language.identifier),
        namespace=NamespaceRef(m.namespace.identifier),
        size=SizeMB(round(default.size_bytes / 1e6, 3)), date=m.date, hour=m.hour,
        size_bytes=default.size_bytes, uncompressed_size=m.uncompressed_size,
        article_count=m.article_count, event_counts=m.event_counts, sha256=default.sha256,
        content_root_hash=m.content_root_hash, formats=formats,
    )


def _hour(date: str, hour: str) -> datetime:
    try:
        return parse_date_hour(date, hour)
    except InvalidParameter as exc:
        # The path matched the declared pattern but names no hour (2026-02-30): nothing there.
        raise NotFound(f"no batches: {exc.detail}") from None


async def _manifest(blobs: BlobStore, principal: Principal, date: str, hour: str, identifier: str
                    ) -> tuple[str, datetime, BatchManifest]:
    when = _hour(date, hour)
    wiki, ns = parse_snapshot_identifier(identifier)
    entitle(principal, FEED, wiki, ns)
    m = await anyio.to_thread.run_sync(read_batch, blobs, when, identifier)
    return wiki, when, m


@route("/{date:str}/{hour:str}", http_method=["GET", "POST"], status_code=200,
       dependencies=PRINCIPAL,
       responses=feed_responses(list[BatchMetadata],
                                "The hour's batches the plan covers (JSON or NDJSON)"))
async def list_batches(request: Request[Any, Any, Any], principal: PrincipalDep,
                       blobs: Injected[BlobStore], metered: Injected[Metered], date: BatchDate,
                       hour: BatchHour) -> Response[bytes]:
    """The hour's batches the plan covers; ``fields``, ``filters``, ``limit``."""
    when = _hour(date, hour)
    query = check_paths(await read_query(request), BATCH_PATHS)
    index = await anyio.to_thread.run_sync(read_hour, blobs, when)
    views = [batch_view(m) for m in index.batches
             if allowed(principal, FEED, m.is_part_of.identifier, m.namespace.identifier)]
    items = select(views, query)
    return await metered.metadata(request, principal, FEED, None, items, many=True)


@route("/{date:str}/{hour:str}/{identifier:str}", http_method=["GET", "POST"],
       status_code=200, dependencies=PRINCIPAL, responses=feed_responses(BatchMetadata,
                                                                         "Batch metadata"))
async def get_batch(request: Request[Any, Any, Any], principal: PrincipalDep,
                    blobs: Injected[BlobStore], metered: Injected[Metered], date: BatchDate,
                    hour: BatchHour, identifier: SnapshotId) -> Response[bytes]:
    """One batch's metadata; ``fields``."""
    wiki, _, m = await _manifest(blobs, principal, date, hour, identifier)
    query = check_paths(await read_query(request), BATCH_PATHS)
    item = project(msgspec.to_builtins(batch_view(m)), query.fields)
    return await metered.metadata(request, principal, FEED, wiki, item, many=False)


@route("/{date:str}/{hour:str}/{identifier:str}/download", http_method=["GET", "HEAD"],
       dependencies=PRINCIPAL, responses=ARCHIVE_RESPONSES)
async def download_batch(request: Request[Any, Any, Any], principal: PrincipalDep,
                         blobs: Injected[BlobStore], metered: Injected[Metered],
                         date: BatchDate, hour: BatchHour, identifier: SnapshotId,
                         fmt: FormatParam = None) -> Response[Any]:
    """The batch: WME's ``<id>.tar.gz`` (the default when built) or zstd NDJSON
    (``Accept: application/zstd`` or ``?format=zstd``); Range, If-Range, If-None-Match, HEAD."""
    wiki, when, m = await _manifest(blobs, principal, date, hour, identifier)
    zstd = zstd_download(m.chunks, Checksums(size=int(m.size.value), sha256=m.sha256),
                         f"{m.identifier}_{label(when)}.ndjson.zst")
    downloads = archive_downloads(m.identifier, m.chunks, m.representations, zstd=zstd,
                                  filename=f"{m.identifier}.tar.gz")
    chosen = negotiate(downloads, request.headers.get("accept"), fmt)
    return await metered.representation(request, principal, FEED, wiki, chosen,
                                        last_modified=m.date_modified,
                                        resource=f"{m.identifier}@{label(when)}")


def router() -> Router:
    return Router("/v2/batches", route_handlers=[list_batches, get_batch, download_batch],
                  tags=["batches"])
