"""The glue every feed endpoint shares: admit (rate limit, quota), serve, report usage once.

Metadata answers are metered by the bytes of their body; downloads (snapshots, chunks, diffs,
batches) by the bytes actually delivered through ``downloads.serve``. A body GET of a download
is a *download* of ``resource`` (one per customer, resource and day however many Range requests
fetch it); HEAD and 304 are not downloads, but still rate limited and counted as requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from litestar import Request, Response
from litestar.openapi import ResponseSpec

from feedserver.api import downloads
from feedserver.api.problems import problem_specs
from feedserver.api.query import render_list, render_one
from feedserver.api.ranges import Part
from feedserver.api.services import Principal, services_of
from feedserver.feeds.manifest import ChunkInfo
from feedserver.metering.records import Feed

# What every download endpoint may answer (snapshots, chunks, diffs, batches).
DOWNLOAD_RESPONSES: dict[int, ResponseSpec] = {
    **problem_specs(400, 401, 403, 404, 416, 422, 429),
    200: ResponseSpec(None, description="The whole file (application/zstd); ETag, "
                      "Repr-Digest, Accept-Ranges", media_type="application/zstd"),
    206: ResponseSpec(None, description="One range (Content-Range) or several "
                      "(multipart/byteranges)", media_type="application/zstd"),
    304: ResponseSpec(None, description="Not modified (If-None-Match)"),
    307: ResponseSpec(None, description="Redirect to a presigned URL (S3 store with "
                      "s3_redirect_downloads, single-file downloads without Range)"),
}


async def metered_metadata(request: Request[Any, Any, Any], principal: Principal, feed: Feed,
                           project: str | None, data: Any, *, many: bool) -> Response[bytes]:
    """A metadata answer (a list, JSON or NDJSON, or one object): admitted, rendered and
    reported with the bytes it carries."""
    svc = services_of(request)
    headers = await svc.admit(principal, feed, project)
    response = render_list(request, data, headers) if many else render_one(data, headers)
    svc.report(request, principal, feed=feed, project=project, bytes_sent=len(response.content))
    return response


async def metered_download(request: Request[Any, Any, Any], principal: Principal, feed: Feed,
                           project: str, *, parts: Sequence[Part], size: int, sha256: str,
                           last_modified: datetime, filename: str, resource: str
                           ) -> Response[Any]:
    """HEAD or GET of the blob ``parts`` laid back to back (Range, ETag, 304, presigned
    redirect on S3), admitted as a download of ``resource`` and reported as delivered."""
    svc = services_of(request)
    get = request.method == "GET"

    async def admit() -> dict[str, str]:
        return await svc.admit(principal, feed, project, resource=resource, download=True)

    def on_sent(n: int) -> None:
        svc.report(request, principal, feed=feed, project=project, bytes_sent=n,
                   resource=resource, download=get)

    def on_progress(n: int) -> None:
        svc.progress(request, principal, feed=feed, project=project, bytes_sent=n,
                     resource=resource, download=get)

    async def not_modified() -> dict[str, str]:
        # A 304 is a request (rate limited, counted), never a download.
        headers = await svc.admit(principal, feed, project)
        svc.report(request, principal, feed=feed, project=project)
        return headers

    if not get:
        head_headers = await svc.admit(principal, feed, project)
        svc.report(request, principal, feed=feed, project=project)
    response = await downloads.serve(
        request, blobs=svc.blobs, parts=parts, size=size, sha256=sha256,
        last_modified=last_modified, filename=filename, admit=admit, on_sent=on_sent,
        not_modified=not_modified if get else None,  # HEAD: admitted and reported above
        presign_seconds=svc.settings.presign_seconds if svc.settings.s3_redirect_downloads
        else None,
        on_progress=on_progress, checkpoint_bytes=svc.settings.usage_checkpoint_bytes,
        checkpoint_seconds=svc.settings.usage_checkpoint_seconds,
    )
    if not get:
        response.headers.update(head_headers)
    return response


async def metered_chunks(request: Request[Any, Any, Any], principal: Principal, feed: Feed,
                         project: str, chunks: Sequence[ChunkInfo], *, last_modified: datetime,
                         sha256: str, filename: str, resource: str) -> Response[Any]:
    """``chunks`` of one manifest back to back (a whole snapshot or diff, or one chunk)."""
    base = chunks[0].offset if chunks else 0
    return await metered_download(
        request, principal, feed, project,
        parts=[Part(c.key, c.offset - base, c.size) for c in chunks],
        size=sum(c.size for c in chunks), sha256=sha256, last_modified=last_modified,
        filename=filename, resource=resource)
