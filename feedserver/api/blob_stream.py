"""Stream the stored parts of a download from a blob store, reading ahead of the sender.

The stores are synchronous, so every read runs in a worker thread, one batch of blocks
(``BATCH_BYTES``; a body starts with one block, then two, then four...) per thread hop. While
a batch is sent, the next one is read, so the store (a remote S3) and the client's socket
work at the same time rather than in turn. That holds
across parts too: once a part's last batch is read, the next stored part is opened and its
first batch read (for S3 the next GET, whose answer takes the store a while to start) while
that last batch is sent. The window is in order and bounded: at most two batches per body.

A body's first part may also be opened before the body is even decided (``open_ahead``):
a download opens the first part of the version it expects while it reads the publish pointer,
and hands the ``Ahead`` to ``stream_segments`` only if the pointer agrees. Whoever holds an
``Ahead`` closes it or hands it on; ``stream_segments`` uses it for its first stored segment
when that is exactly the segment opened, and closes it otherwise.

Blocks go to the server as the store gave them (at most ``READ_BLOCK`` each), never joined:
a join is one more copy of every byte, and it costs more than the extra messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from functools import partial

import anyio.to_thread

from feedserver.api.ranges import Segment
from feedserver.errors import IntegrityError
from feedserver.storage.blobs import READ_BLOCK, BlobStore

# Bytes read per worker-thread hop: fewer hops per MB, bounded memory per connection.
BATCH_BYTES = 4 * 1024 * 1024

_Blocks = Generator[bytes, None, None]


def _take(it: Iterator[bytes], limit: int = BATCH_BYTES) -> list[bytes]:
    out: list[bytes] = []
    size = 0
    for block in it:
        out.append(block)
        size += len(block)
        if size >= limit:
            break
    return out


def read_blocks(it: Iterator[bytes], limit: int = BATCH_BYTES) -> asyncio.Future[list[bytes]]:
    """The next blocks of ``it``, at least ``limit`` bytes of them unless it ends first (an
    empty list: it ended), read in ONE worker-thread hop."""
    return asyncio.ensure_future(anyio.to_thread.run_sync(_take, it, limit))


def _open_and_take(blobs: BlobStore, seg: Segment, limit: int) -> tuple[_Blocks, list[bytes]]:
    it = blobs.open_range(seg.key, seg.start, seg.stop)
    try:
        return it, _take(it, limit)
    except BaseException:
        it.close()
        raise


def _first(blobs: BlobStore, seg: Segment, limit: int = BATCH_BYTES
           ) -> asyncio.Future[tuple[_Blocks, list[bytes]]]:
    """``seg`` opened and its first batch (``limit`` bytes) read, in one worker-thread hop."""
    return asyncio.ensure_future(anyio.to_thread.run_sync(_open_and_take, blobs, seg, limit))


def _close_after(it: _Blocks, read: asyncio.Future[list[bytes]]) -> None:
    if not read.cancelled():
        read.exception()  # retrieved: a failed read-ahead of a body that ended is not news
    it.close()


def _close_first(first: asyncio.Future[tuple[_Blocks, list[bytes]]]) -> None:
    """A part read ahead for a body that ended first: release its file or connection."""
    if not first.cancelled() and first.exception() is None:
        first.result()[0].close()


class Ahead:
    """``seg`` being opened, its first block read, in a worker thread, before its body."""

    __slots__ = ("opened", "seg")

    def __init__(self, blobs: BlobStore, seg: Segment) -> None:
        self.seg = seg
        self.opened = _first(blobs, seg, 1)

    def close(self) -> None:
        """Drop it: its connection is released once the open is over (at once if it is)."""
        self.opened.add_done_callback(_close_first)


def open_ahead(blobs: BlobStore, segments: Sequence[Segment]) -> Ahead | None:
    """Start opening the first stored segment of ``segments`` (None when there is none)."""
    seg = next((seg for seg in segments if not seg.data), None)
    return Ahead(blobs, seg) if seg is not None else None


async def _claim(blobs: BlobStore, ahead: Ahead) -> tuple[_Blocks, list[bytes]]:
    """The opened part of ``ahead``; opened again here if opening ahead failed (the body then
    fails, or not, exactly as without it). Cancelled meanwhile: closed when it is open."""
    try:
        return await asyncio.shield(ahead.opened)
    except asyncio.CancelledError:
        ahead.close()
        raise
    except Exception:
        return await _first(blobs, ahead.seg, 1)


def _next_stored(segments: Sequence[Segment], i: int) -> Segment | None:
    return next((seg for seg in segments[i + 1:] if not seg.data), None)


async def stream_segments(blobs: BlobStore, segments: Sequence[Segment],
                          opened: Ahead | None = None) -> AsyncGenerator[bytes, None]:
    """The bytes of ``segments`` in order: literal ones as they are, stored ones read from
    ``blobs`` with read-ahead. A stored part shorter than its segment raises
    ``IntegrityError`` (headers already promised its length: the server aborts, never pads).
    The store's errors (``BlobNotFound``) surface when their part is reached. ``opened``: the
    first stored segment, opened ahead; used if it is that one, else closed."""
    first: asyncio.Future[tuple[_Blocks, list[bytes]]] | None = None
    try:
        for i, seg in enumerate(segments):
            if seg.data:
                yield seg.data[seg.start : seg.stop]
                continue
            # The body's first part starts with one block: the first bytes go out as soon as
            # the store has them, and the read-ahead takes over from there.
            if opened is not None and opened.seg == seg:
                claimed, opened = opened, None
                it, batch = await _claim(blobs, claimed)
            else:
                if opened is not None:
                    opened.close()
                    opened = None
                it, batch = await (first if first is not None else _first(blobs, seg, 1))
            first = None
            want = seg.stop - seg.start
            read = sent = 0
            ahead: asyncio.Future[list[bytes]] | None = None
            try:
                while batch:
                    got = sum(map(len, batch))
                    read += got
                    if read < want:
                        # Twice the batch just read, up to BATCH_BYTES: a body that starts
                        # with one block does not then wait for a whole batch (the client
                        # would get nothing meanwhile); the window widens as it flows.
                        ahead = read_blocks(it, min(BATCH_BYTES, max(2 * got, READ_BLOCK)))
                    elif (later := _next_stored(segments, i)) is not None:
                        first = _first(blobs, later)  # this part is read: on to the next
                    for block in batch:
                        sent += len(block)
                        yield block
                    batch = await ahead if ahead is not None else []
                    ahead = None
            finally:
                if ahead is not None:
                    # The worker thread may still be inside ``it`` (a cut or cancelled
                    # body): close it once that read is over, never under the thread's feet.
                    ahead.add_done_callback(partial(_close_after, it))
                else:
                    it.close()
            if sent != want:
                raise IntegrityError(f"blob {seg.key} is shorter than its manifest says")
    finally:
        if opened is not None:
            opened.close()
        if first is not None:
            first.add_done_callback(_close_first)
