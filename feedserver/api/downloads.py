"""Serve a download made of parts laid back to back (stored blobs such as chunk files or WME
parts, and literal bytes such as a WME archive's rebuilt tar headers): HEAD and GET with
ETag / conditional requests / single and multiple Ranges, streamed in blocks.

The body is never held in memory: each stored part is read with ``BlobStore.open_range`` one
block at a time, in a worker thread (the stores are synchronous). Bytes actually delivered are
counted by ``count_body_bytes`` and reported once, when the body ends (complete, cut or
cancelled), with cumulative checkpoints on the way (journal only), so a server killed mid-body
still bills it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import anyio.to_thread
from litestar import Request, Response
from litestar.response import Redirect, Stream

from feedserver.api import ranges
from feedserver.api.blob_stream import BATCH_BYTES, Ahead, open_ahead, stream_segments
from feedserver.api.body_bytes import BodyMeter, count_body_bytes, metered
from feedserver.api.ranges import ByteRange, Part
from feedserver.api.splice_body import SpliceBody, splicing_store
from feedserver.api.zerocopy import FileBody, FileSegment, supports_zerocopy
from feedserver.errors import FeedError
from feedserver.storage.blobs import BlobStore

CONTENT_TYPE = "application/zstd"  # the native format (zstd NDJSON)


def _redirectable(request: Request[Any, Any, Any], wanted: list[ByteRange] | None) -> bool:
    """A GET the store may answer itself: the whole object, or ONE range written exactly as
    the presigned URL signs it (``bytes=first-last``), since the client repeats its own Range
    header when it follows the redirect; anything else the API serves."""
    if wanted is None:
        return True
    rng = wanted[0]
    return len(wanted) == 1 and (request.headers.get("range") or "").replace(" ", "") \
        == f"bytes={rng.start}-{rng.stop - 1}"


def _local_files(blobs: BlobStore, segments: Sequence[ranges.Segment]
                 ) -> list[FileSegment] | None:
    """The segments as local files (literal bytes as they are) when the store keeps every
    stored one on this machine."""
    out = []
    for seg in segments:
        if seg.data:
            out.append(FileSegment(None, seg.start, seg.stop, seg.data))
            continue
        path = blobs.local_path(seg.key)
        if path is None:
            return None
        out.append(FileSegment(path, seg.start, seg.stop))
    return out


async def _multipart_body(blobs: BlobStore, parts: Sequence[Part], rngs: Sequence[ByteRange],
                          layout: ranges.Multipart) -> AsyncIterator[bytes]:
    for head, rng in zip(layout.heads, rngs, strict=True):
        yield head
        async for block in stream_segments(blobs, ranges.segments(parts, rng)):
            yield block
    yield layout.tail


def start_ahead(request: Request[Any, Any, Any], blobs: BlobStore, parts: Sequence[Part],
                size: int, presign_seconds: int | None) -> Ahead | None:
    """Start opening the stored part ``serve`` would stream first for this request, if it
    would stream one from a remote store: a GET without conditions, of the whole download
    or one range, not redirected. None otherwise, or when the request is in error (``serve``
    answers that). The caller hands the ``Ahead`` to ``serve`` or closes it."""
    headers = request.headers
    if request.method != "GET" or presign_seconds or "if-none-match" in headers \
            or "if-range" in headers:
        return None
    try:
        wanted = ranges.parse_range(headers.get("range"), size)
    except FeedError:
        return None
    if wanted is not None and len(wanted) != 1:
        return None
    segments = ranges.segments(parts, ByteRange(0, size) if wanted is None else wanted[0])
    stored = next((seg for seg in segments if not seg.data), None)
    if stored is None or blobs.local_path(stored.key) is not None \
            or splicing_store(request.scope, blobs) is not None:
        return None  # nothing stored, a local file (sendfile), or spliced: nothing to open
    return open_ahead(blobs, segments)


async def serve(
    request: Request[Any, Any, Any],
    *,
    blobs: BlobStore,
    parts: Sequence[Part],
    size: int,
    sha256: str,
    last_modified: datetime,
    filename: str,
    media_type: str = CONTENT_TYPE,
    vary: str | None = None,
    admit: Callable[[], Awaitable[dict[str, str]]],
    on_sent: Callable[[int], None],
    not_modified: Callable[[], Awaitable[dict[str, str]]] | None = None,
    presign_seconds: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_bytes: int = 0,
    checkpoint_seconds: float = 0.0,
    ahead: Ahead | None = None,
) -> Response[Any]:
    """The response for HEAD or GET of the download ``parts`` (of ``media_type``).

    ``admit`` runs only when a body will be sent (not for HEAD or 304) and returns headers
    (RateLimit); ``on_sent`` gets the body bytes actually delivered. A 304 awaits
    ``not_modified`` instead (rate limit and request count, no download) and carries the
    headers it returns. ``presign_seconds`` set and a single part: GET answers 307 to a
    presigned URL when the store can make one. ``on_progress`` gets the cumulative bytes
    delivered while the body streams, every ``checkpoint_bytes`` or ``checkpoint_seconds``.
    ``media_type`` is the representation's; ``vary`` names the request headers that chose it
    (``Accept``: the resource has several representations, each with its own ETag).
    ``ahead``: the first stored part, opened already (``start_ahead``); ``serve`` owns it and
    closes it when the body does not start with exactly that part.
    """
    try:
        etag = ranges.strong_etag(sha256)
        headers = {
            "etag": etag,
            "last-modified": ranges.http_date(last_modified),
            "accept-ranges": "bytes",
            "cache-control": "private, no-cache",
            "content-disposition": f'attachment; filename="{filename}"',
            **{k.lower(): v for k, v in ranges.digest_headers(sha256).items()},
        }
        if vary:
            headers["vary"] = vary
        if ranges.none_match(request.headers.get("if-none-match"), etag):
            extra = await not_modified() if not_modified is not None else {}
            return Response(b"", status_code=304, headers={
                **{k: v for k, v in headers.items()
                   if k in {"etag", "last-modified", "cache-control", "vary"}}, **extra})
        if request.method == "HEAD":
            return Response(b"", media_type=media_type,
                            headers={**headers, "content-length": str(size)})
        wanted = None
        if ranges.if_range_allows(request.headers.get("if-range"), etag, last_modified):
            wanted = ranges.parse_range(request.headers.get("range"), size)
        headers.update(await admit())
        if presign_seconds and len(parts) == 1 and not parts[0].data \
                and _redirectable(request, wanted):
            bound = None if wanted is None else (wanted[0].start, wanted[0].stop)
            url = await anyio.to_thread.run_sync(blobs.presign, parts[0].key, presign_seconds,
                                                 bound)
            if url:
                # Metered as delivered: the URL serves these bytes (and only these: the range is
                # signed) to whoever follows it within ``presign_seconds``.
                on_sent(size if wanted is None else wanted[0].length)
                return Redirect(url, status_code=307, headers=headers)
        if wanted is None or len(wanted) == 1:
            rng = ByteRange(0, size) if wanted is None else wanted[0]
            segments = ranges.segments(parts, rng)
            status, length = (200, size) if wanted is None else (206, rng.length)
            if wanted is not None:
                headers["content-range"] = rng.content_range(size)
            headers["content-length"] = str(length)
            files = _local_files(blobs, segments) if supports_zerocopy(request.scope) else None
            meter = BodyMeter(on_sent, checkpoint=on_progress, checkpoint_bytes=checkpoint_bytes,
                              checkpoint_seconds=checkpoint_seconds)
            if files is not None:
                # sendfile: the kernel moves the bytes, Python never sees them
                return FileBody(files, meter, piece=BATCH_BYTES,
                                status_code=status, media_type=media_type, headers=headers)
            spliced = splicing_store(request.scope, blobs)
            if spliced is not None:
                # splice: the store's socket to the client's, Python never sees the bytes
                return SpliceBody(spliced, segments, meter, piece=BATCH_BYTES,
                                  status_code=status, media_type=media_type, headers=headers)
            body = stream_segments(blobs, segments, ahead)
            ahead = None  # the body owns it now
            return Stream(metered(body, meter), status_code=status, media_type=media_type,
                          headers=headers)
        layout = ranges.multipart(wanted, size, media_type, secrets.token_hex(16))
        headers["content-length"] = str(layout.length)
        counted = count_body_bytes(_multipart_body(blobs, parts, wanted, layout), on_sent,
                                   checkpoint=on_progress, checkpoint_bytes=checkpoint_bytes,
                                   checkpoint_seconds=checkpoint_seconds)
        return Stream(counted, status_code=206, media_type=layout.content_type, headers=headers)
    finally:
        if ahead is not None:
            ahead.close()
