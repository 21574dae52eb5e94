"""Stream the stored parts of a download from a blob store, reading ahead of the sender.

The stores are synchronous, so every read runs in a worker thread, one batch of blocks
(``BATCH_BYTES``) per thread hop. Two things are in flight while a batch is sent, so the store
(a remote S3) and the client's socket work at the same time rather than in turn:

- the next batch of the same part (read-ahead);
- once the part's last batch is being read, the opening of the next stored part (for S3 the
  GET request, whose answer takes the store a while to start): the window is in order and
  bounded, at most two batches and one opened part per body, and a part is opened only when
  the previous one is nearly read, so an opened answer never waits long for its reader.

Blocks go to the server as the store gave them (at most ``READ_BLOCK`` each), never joined:
a join is one more copy of every byte, and it costs more than the extra messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from functools import partial

import anyio.to_thread

from feedserver.api.ranges import Segment
from feedserver.errors import IntegrityError
from feedserver.storage.blobs import BlobStore

# Bytes read per worker-thread hop: fewer hops per MB, bounded memory per connection.
BATCH_BYTES = 4 * 1024 * 1024

_Blocks = Generator[bytes, None, None]


def _take(it: Iterator[bytes]) -> list[bytes]:
    out: list[bytes] = []
    size = 0
    for block in it:
        out.append(block)
        size += len(block)
        if size >= BATCH_BYTES:
            break
    return out


def _read(it: Iterator[bytes]) -> asyncio.Future[list[bytes]]:
    return asyncio.ensure_future(anyio.to_thread.run_sync(_take, it))


def _open(blobs: BlobStore, seg: Segment) -> asyncio.Future[_Blocks]:
    return asyncio.ensure_future(
        anyio.to_thread.run_sync(blobs.open_range, seg.key, seg.start, seg.stop))


def _close_after(it: _Blocks, read: asyncio.Future[list[bytes]]) -> None:
    if not read.cancelled():
        read.exception()  # retrieved: a failed read-ahead of a body that ended is not news
    it.close()


def _close_opened(opened: asyncio.Future[_Blocks]) -> None:
    """A part opened ahead for a body that ended first: release its connection."""
    if not opened.cancelled() and opened.exception() is None:
        opened.result().close()


def _next_stored(segments: Sequence[Segment], i: int) -> Segment | None:
    return next((seg for seg in segments[i + 1:] if not seg.data), None)


async def stream_segments(blobs: BlobStore, segments: Sequence[Segment]
                          ) -> AsyncIterator[bytes]:
    """The bytes of ``segments`` in order: literal ones as they are, stored ones read from
    ``blobs`` with read-ahead. A stored part shorter than its segment raises
    ``IntegrityError`` (headers already promised its length: the server aborts, never pads)."""
    opening: asyncio.Future[_Blocks] | None = None
    try:
        for i, seg in enumerate(segments):
            if seg.data:
                yield seg.data[seg.start : seg.stop]
                continue
            it = await (opening if opening is not None else _open(blobs, seg))
            opening = None
            want = seg.stop - seg.start
            read = sent = 0
            ahead = _read(it)
            try:
                while batch := await ahead:
                    ahead = _read(it)
                    read += sum(map(len, batch))
                    if opening is None and read + BATCH_BYTES >= want:
                        # The read just started is this part's last: open the next one now.
                        nxt = _next_stored(segments, i)
                        opening = _open(blobs, nxt) if nxt is not None else None
                    for block in batch:
                        sent += len(block)
                        yield block
            finally:
                # The worker thread may still be inside ``it`` (a cut or cancelled body):
                # close it once that read is over, never under the thread's feet.
                ahead.add_done_callback(partial(_close_after, it))
            if sent != want:
                raise IntegrityError(f"blob {seg.key} is shorter than its manifest says")
    finally:
        if opening is not None:
            opening.add_done_callback(_close_opened)
