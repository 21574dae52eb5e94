"""Bodies of remote stored parts spliced to the client (``feedserver.splice``): the app side.

Where the server advertises ``feedserver.splice`` (``feedserver serve`` on plain TCP, see
``zerocopy_server``) and the store can hand over the socket of a ranged read (S3 over plain
HTTP, ``SocketReads``), a download's stored parts are not read by Python: each part's GET is
made in a worker thread, the bytes its HTTP client already buffered are sent as a body
message, and the rest goes from the store's socket to the client's with ``splice(2)``, in
pieces of at most ``piece`` bytes (``splice_relay``). Literal parts (a WME archive's rebuilt
tar headers) are sent as they are. A part whose answer cannot be handed over (chunked or
encoded) is streamed in blocks instead.

Metering is FileBody's: a due checkpoint is journaled before a piece is handed over, with the
piece included (``BodyMeter.ahead``), and the piece is counted once it left; a cut connection
is billed to the byte (``SpliceInterrupted.sent``). The store's connection goes back to its
pool only when its range was consumed whole; otherwise it is closed. The next stored part is
opened as soon as the one before starts to be spliced, so its GET's wait overlaps that part
(at most two of the store's connections per body, as for the streamed relay).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
from litestar.response.base import ASGIResponse

from feedserver.api.blob_stream import read_blocks
from feedserver.api.body_bytes import BodyMeter
from feedserver.api.ranges import Segment
from feedserver.api.splice_relay import SPLICE, SpliceInterrupted
from feedserver.api.zerocopy import FileBody
from feedserver.errors import IntegrityError, StorageError
from feedserver.storage.blobs import BlobStore, SocketRange, SocketReads

if TYPE_CHECKING:
    from litestar.types import Receive, Send

_Opened = SocketRange | Generator[bytes, None, None]
_Send = Callable[[dict[str, object]], Awaitable[None]]


def splicing_store(scope: Any, blobs: BlobStore) -> SocketReads | None:
    """``blobs`` when this request's body can be spliced from it, else None."""
    extensions = scope.get("extensions") or {}
    if SPLICE in extensions and isinstance(blobs, SocketReads) and blobs.splices():
        return blobs
    return None


def _open(blobs: SocketReads, seg: Segment) -> asyncio.Future[_Opened]:
    return asyncio.ensure_future(
        anyio.to_thread.run_sync(blobs.open_socket, seg.key, seg.start, seg.stop))


def _release(opened: asyncio.Future[_Opened]) -> None:
    """A part opened ahead for a body that ended first: its connection is closed."""
    if opened.cancelled() or opened.exception() is not None:
        return
    got = opened.result()
    if isinstance(got, SocketRange):
        got.close(complete=False)
    else:
        got.close()


class _ASGISpliceBody(ASGIResponse):
    _should_set_content_length = False

    def __init__(self, *, blobs: SocketReads, segments: Sequence[Segment], meter: BodyMeter,
                 piece: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blobs = blobs
        self.segments = segments
        self.meter = meter
        self.piece = max(1, piece)

    async def send_body(self, send: Send, receive: Receive) -> None:
        del receive  # a dropped client shows as a failed send
        send_any = cast("_Send", send)
        meter = self.meter
        stored = [i for i, seg in enumerate(self.segments) if not seg.data]
        following = dict(itertools.pairwise(stored))
        opened: asyncio.Future[_Opened] | None = None
        try:
            for i, seg in enumerate(self.segments):
                if seg.data:  # a few literal bytes between stored parts
                    await self._bytes(send_any, seg.data[seg.start:seg.stop])
                    continue
                got = await (opened if opened is not None else _open(self.blobs, seg))
                opened = None
                later = self.segments[following[i]] if i in following else None
                if isinstance(got, SocketRange):
                    whole, opened = await self._splice(send_any, got, seg, later)
                    if not whole:
                        return
                else:
                    if later is not None:
                        opened = _open(self.blobs, later)
                    await self._blocks(send_any, got, seg)
            await send_any({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            meter.done()
            if opened is not None:
                opened.add_done_callback(_release)

    async def _bytes(self, send: _Send, body: bytes) -> None:
        self.meter.ahead(len(body))
        await send({"type": "http.response.body", "body": body, "more_body": True})
        self.meter.sent(len(body))

    async def _splice(self, send: _Send, got: SocketRange, seg: Segment,
                      later: Segment | None) -> tuple[bool, asyncio.Future[_Opened] | None]:
        """Send ``got`` whole: (True, the next part opening) or (False, None) when the client
        went away. Its connection is released, or closed unless consumed whole."""
        meter = self.meter
        want = seg.stop - seg.start
        pos = 0
        opened: asyncio.Future[_Opened] | None = None
        try:
            if got.length != want:  # headers promised ``want`` bytes: abort, never pad
                raise IntegrityError(f"blob {seg.key} is shorter than its manifest says")
            if got.head:
                await self._bytes(send, got.head)
                pos = len(got.head)
            while pos < want:
                n = min(self.piece, want - pos)
                if opened is None and later is not None:
                    # the next part's GET (and the store's wait before its first byte)
                    # overlaps this whole part: no reader thread competes any more
                    opened = _open(self.blobs, later)
                meter.ahead(n)
                try:
                    await send({"type": SPLICE, "fd": got.fileno, "count": n,
                                "more_body": True})
                except SpliceInterrupted as exc:
                    meter.sent(exc.sent)
                    if exc.source:
                        raise StorageError(f"blob {seg.key}: {exc}") from exc
                    if opened is not None:
                        opened.add_done_callback(_release)
                    return False, None
                meter.sent(n)
                pos += n
            return True, opened
        except BaseException:
            if opened is not None:
                opened.add_done_callback(_release)
            raise
        finally:
            got.close(complete=pos == want)

    async def _blocks(self, send: _Send, blocks: Generator[bytes, None, None],
                      seg: Segment) -> None:
        """A part that cannot be spliced, read as the streamed relay reads (``read_blocks``:
        up to ``BATCH_BYTES`` per worker-thread hop)."""
        sent = 0
        try:
            while batch := await read_blocks(blocks):
                for block in batch:
                    sent += len(block)
                    await self._bytes(send, block)
        finally:
            blocks.close()
        if sent != seg.stop - seg.start:
            raise IntegrityError(f"blob {seg.key} is shorter than its manifest says")


class SpliceBody(FileBody):
    """A body of stored parts spliced from ``blobs`` (``splicing_store``) to the client."""

    def __init__(self, blobs: SocketReads, segments: Sequence[Segment], meter: BodyMeter, *,
                 piece: int, status_code: int, media_type: str,
                 headers: dict[str, str]) -> None:
        super().__init__((), meter, piece=piece, status_code=status_code,
                         media_type=media_type, headers=headers)
        self.blobs = blobs
        self.spliced = segments

    def asgi_body(self, **kwargs: Any) -> ASGIResponse:
        return _ASGISpliceBody(blobs=self.blobs, segments=self.spliced, meter=self.meter,
                               piece=self.piece, **kwargs)
