"""Serve a download made of stored parts (chunk files) laid back to back: HEAD and GET with
ETag / conditional requests / single and multiple Ranges, streamed in blocks.

The body is never held in memory: each part is read with ``BlobStore.open_range`` one block at
a time, in a worker thread (the stores are synchronous). Bytes actually delivered are counted
by ``count_body_bytes`` and reported once, when the body ends (complete, cut or cancelled), with
cumulative checkpoints on the way (journal only), so a server killed mid-body still bills it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import anyio.to_thread
from litestar import Request, Response
from litestar.response import Redirect, Stream

from feedserver.api import ranges
from feedserver.api.body_bytes import count_body_bytes
from feedserver.api.ranges import ByteRange, Part
from feedserver.errors import IntegrityError
from feedserver.storage.blobs import BlobStore

CONTENT_TYPE = "application/zstd"
# Bytes read per worker-thread hop: fewer hops per MB, bounded memory per connection.
BATCH_BYTES = 4 * 1024 * 1024


def _take(it: Iterator[bytes]) -> list[bytes]:
    out: list[bytes] = []
    size = 0
    for block in it:
        out.append(block)
        size += len(block)
        if size >= BATCH_BYTES:
            break
    return out


async def _blocks(blobs: BlobStore, segments: Sequence[ranges.Segment]) -> AsyncIterator[bytes]:
    for seg in segments:
        it = await anyio.to_thread.run_sync(blobs.open_range, seg.key, seg.start, seg.stop)
        got = 0
        try:
            while batch := await anyio.to_thread.run_sync(_take, it):
                # One ASGI message per batch: the per-message cost of the server dominates.
                data = batch[0] if len(batch) == 1 else b"".join(batch)
                got += len(data)
                yield data
        finally:
            it.close()
        if got != seg.stop - seg.start:
            # Headers already promised this many bytes: abort the connection, never pad.
            raise IntegrityError(f"blob {seg.key} is shorter than its manifest says")


async def _multipart_body(blobs: BlobStore, parts: Sequence[Part], rngs: Sequence[ByteRange],
                          layout: ranges.Multipart) -> AsyncIterator[bytes]:
    for head, rng in zip(layout.heads, rngs, strict=True):
        yield head
        async for block in _blocks(blobs, ranges.segments(parts, rng)):
            yield block
    yield layout.tail


async def serve(
    request: Request[Any, Any, Any],
    *,
    blobs: BlobStore,
    parts: Sequence[Part],
    size: int,
    sha256: str,
    last_modified: datetime,
    filename: str,
    admit: Callable[[], Awaitable[dict[str, str]]],
    on_sent: Callable[[int], None],
    not_modified: Callable[[], Awaitable[dict[str, str]]] | None = None,
    presign_seconds: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_bytes: int = 0,
    checkpoint_seconds: float = 0.0,
    media_type: str = CONTENT_TYPE,
) -> Response[Any]:
    """The response for HEAD or GET of the download ``parts`` (of ``media_type``).

    ``admit`` runs only when a body will be sent (not for HEAD or 304) and returns headers
    (RateLimit); ``on_sent`` gets the body bytes actually delivered. A 304 awaits
    ``not_modified`` instead (rate limit and request count, no download) and carries the
    headers it returns. ``presign_seconds`` set and a single part: GET answers 307 to a
    presigned URL when the store can make one. ``on_progress`` gets the cumulative bytes
    delivered while the body streams, every ``checkpoint_bytes`` or ``checkpoint_seconds``.
    """
    etag = ranges.strong_etag(sha256)
    headers = {
        "etag": etag,
        "last-modified": ranges.http_date(last_modified),
        "accept-ranges": "bytes",
        "cache-control": "private, no-cache",
        "content-disposition": f'attachment; filename="{filename}"',
        **{k.lower(): v for k, v in ranges.digest_headers(sha256).items()},
    }
    if ranges.none_match(request.headers.get("if-none-match"), etag):
        extra = await not_modified() if not_modified is not None else {}
        return Response(b"", status_code=304, headers={
            **{k: v for k, v in headers.items()
               if k in {"etag", "last-modified", "cache-control"}}, **extra})
    if request.method == "HEAD":
        return Response(b"", media_type=media_type,
                        headers={**headers, "content-length": str(size)})
    wanted = None
    if ranges.if_range_allows(request.headers.get("if-range"), etag, last_modified):
        wanted = ranges.parse_range(request.headers.get("range"), size)
    headers.update(await admit())
    if presign_seconds and len(parts) == 1 and wanted is None:
        url = await anyio.to_thread.run_sync(blobs.presign, parts[0].key, presign_seconds)
        if url:
            on_sent(0)
            return Redirect(url, status_code=307, headers=headers)
    if wanted is None:
        body = _blocks(blobs, ranges.segments(parts, ByteRange(0, size)))
        status, length = 200, size
        media = media_type
    elif len(wanted) == 1:
        rng = wanted[0]
        body = _blocks(blobs, ranges.segments(parts, rng))
        status, length = 206, rng.length
        media = media_type
        headers["content-range"] = rng.content_range(size)
    else:
        layout = ranges.multipart(wanted, size, media_type, secrets.token_hex(16))
        body = _multipart_body(blobs, parts, wanted, layout)
        status, length = 206, layout.length
        media = layout.content_type
    headers["content-length"] = str(length)
    counted = count_body_bytes(body, on_sent, checkpoint=on_progress,
                               checkpoint_bytes=checkpoint_bytes,
                               checkpoint_seconds=checkpoint_seconds)
    return Stream(counted, status_code=status, media_type=media, headers=headers)
