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

from feedserver.accounts.models import Principal
from feedserver.api import downloads
from feedserver.api.blob_stream import Ahead
from feedserver.api.negotiation import VARY, Download
from feedserver.api.problems import problem_specs
from feedserver.api.query import render_list, render_one
from feedserver.api.ranges import Part
from feedserver.api.services import Billing, send_later
from feedserver.config import Settings
from feedserver.feeds.snapshots.manifest import ChunkInfo
from feedserver.plans import Feed
from feedserver.storage.blobs import BlobStore

# What every download endpoint may answer (snapshots, chunks, diffs, batches; Parquet shards
# answer application/vnd.apache.parquet instead of zstd).
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
# The WME downloads (snapshots, chunks, batches): WME's tar.gz by default, or zstd NDJSON.
ARCHIVE_RESPONSES: dict[int, ResponseSpec] = {
    **problem_specs(400, 401, 403, 404, 406, 416, 422, 429),
    200: ResponseSpec(None, description="The whole file: WME's tar.gz (application/gzip, "
                      "the default when built) or zstd NDJSON (application/zstd: "
                      "``Accept`` or ``format``); ETag, Repr-Digest, Accept-Ranges, "
                      "Vary: Accept", media_type="application/gzip"),
    206: ResponseSpec(None, description="One range (Content-Range) or several "
                      "(multipart/byteranges) of the chosen representation",
                      media_type="application/gzip"),
    304: ResponseSpec(None, description="Not modified (If-None-Match)"),
    307: ResponseSpec(None, description="Redirect to a presigned URL (S3 store with "
                      "s3_redirect_downloads, single-file downloads without Range)"),
}


class Metered:
    """Metered answers of one request: ``billing`` around the rendering or the download."""

    def __init__(self, billing: Billing, blobs: BlobStore, settings: Settings) -> None:
        self.billing = billing
        self.blobs = blobs
        self.presign_seconds = (settings.presign_seconds if settings.s3_redirect_downloads
                                else None)
        # Open a download's first part ahead (``start_ahead``) only where it is a round trip
        # that can overlap another: a remote store (no local files for ``sendfile``) and
        # bodies served here, not redirected.
        self.opens_ahead = self.presign_seconds is None and blobs.local_path("probe") is None
        self.checkpoint_bytes = settings.usage_checkpoint_bytes
        self.checkpoint_seconds = settings.usage_checkpoint_seconds

    async def metadata(self, request: Request[Any, Any, Any], principal: Principal, feed: Feed,
                       project: str | None, data: Any, *, many: bool) -> Response[bytes]:
        """A metadata answer (a list, JSON or NDJSON, or one object): admitted, rendered and
        reported with the bytes it carries."""
        fields = self.billing.at_once(principal, feed)
        if fields is None:  # more than memory can decide: the whole admission
            fields = await self.billing.admit_fields(principal, feed, project)
        send_later(request, fields)
        response = render_list(request, data) if many else render_one(data)
        self.billing.report(request, principal, feed=feed, project=project,
                            bytes_sent=len(response.content))
        return response

    async def download(self, request: Request[Any, Any, Any], principal: Principal, feed: Feed,
                       project: str, *, parts: Sequence[Part], size: int, sha256: str,
                       last_modified: datetime, filename: str, resource: str,
                       media_type: str = downloads.CONTENT_TYPE, vary: str | None = None,
                       ahead: Ahead | None = None) -> Response[Any]:
        """HEAD or GET of the ``parts`` laid back to back (Range, ETag, 304, presigned
        redirect on S3), admitted as a download of ``resource`` and reported as delivered.
        ``ahead`` (``start_ahead``): its first stored part, opened already; this call owns
        it."""
        billing = self.billing
        get = request.method == "GET"

        async def admit() -> dict[str, str]:
            return await billing.admit(principal, feed, project, resource=resource,
                                       download=True)

        def on_sent(n: int) -> None:
            billing.report(request, principal, feed=feed, project=project, bytes_sent=n,
                           resource=resource, download=get)

        def on_progress(n: int) -> None:
            billing.progress(request, principal, feed=feed, project=project, bytes_sent=n,
                             resource=resource, download=get)

        async def not_modified() -> dict[str, str]:
            # A 304 is a request (rate limited, counted), never a download.
            headers = await billing.admit(principal, feed, project)
            billing.report(request, principal, feed=feed, project=project)
            return headers

        if not get:
            head_headers = await billing.admit(principal, feed, project)
            billing.report(request, principal, feed=feed, project=project)
        response = await downloads.serve(
            request, blobs=self.blobs, parts=parts, size=size, sha256=sha256,
            last_modified=last_modified, filename=filename, media_type=media_type, vary=vary,
            admit=admit, on_sent=on_sent,
            not_modified=not_modified if get else None,  # HEAD: admitted and reported above
            presign_seconds=self.presign_seconds, on_progress=on_progress,
            checkpoint_bytes=self.checkpoint_bytes, checkpoint_seconds=self.checkpoint_seconds,
            ahead=ahead,
        )
        if not get:
            response.headers.update(head_headers)
        return response

    def start_ahead(self, request: Request[Any, Any, Any], download: Download
                    ) -> Ahead | None:
        """Start opening the stored part a GET of ``download`` streams first (S3: its GET
        overlaps whatever the caller does meanwhile), or None (``downloads.start_ahead``).
        The caller hands it to ``representation``/``download`` or closes it."""
        return downloads.start_ahead(request, self.blobs, download.parts,
                                     download.checksums.size, self.presign_seconds)

    async def representation(self, request: Request[Any, Any, Any], principal: Principal,
                             feed: Feed, project: str, download: Download, *,
                             last_modified: datetime, resource: str,
                             ahead: Ahead | None = None) -> Response[Any]:
        """One negotiated representation (``negotiation``) of ``resource``: each has its own
        ETag and bytes, and the bytes of whichever is sent are billed. Both representations
        of one resource are the same download for the download count."""
        return await self.download(
            request, principal, feed, project, parts=download.parts,
            size=download.checksums.size, sha256=download.checksums.sha256,
            last_modified=last_modified, filename=download.filename, resource=resource,
            media_type=download.media_type, vary=VARY, ahead=ahead)

    async def chunks(self, request: Request[Any, Any, Any], principal: Principal, feed: Feed,
                     project: str, chunks: Sequence[ChunkInfo], *, last_modified: datetime,
                     sha256: str, filename: str, resource: str) -> Response[Any]:
        """``chunks`` of one manifest back to back (a whole snapshot or diff, or one chunk)."""
        base = chunks[0].offset if chunks else 0
        return await self.download(
            request, principal, feed, project,
            parts=[Part(c.key, c.offset - base, c.size) for c in chunks],
            size=sum(c.size for c in chunks), sha256=sha256, last_modified=last_modified,
            filename=filename, resource=resource)
