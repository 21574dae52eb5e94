"""Zero-copy file bodies (ASGI ``http.response.zerocopysend``): what the app sends.

The ASGI extension (asgiref's "Zero Copy Send") lets an app hand the server an open file, an
offset and a count instead of the bytes; the server moves them with ``sendfile(2)``, kernel to
kernel, never through Python. ``feedserver serve`` runs uvicorn with the protocol of
``zerocopy_server`` that implements it; any other server (or an in-process test client) does
not advertise it, and ``downloads.serve`` streams bytes instead.

Beyond the extension as specified, a failure is reported to the app, because metering needs
the bytes that left: ``SendfileInterrupted.sent`` is how many bytes of the message reached the
socket before the peer went away, or before the file ended early (``short``); the server has
closed the connection.

``FileBody`` is the litestar response: the segments of local files (and the few literal bytes
between them of a composed download) laid back to back, sent in
pieces of at most ``piece`` bytes (never across a segment). When a checkpoint is due
(``usage_checkpoint_bytes`` / ``_seconds``) it is journaled *before* the piece is handed over,
with the piece included (``BodyMeter.ahead``), and the piece is counted once it left. A server
killed mid-piece has therefore billed at least what the client can still read from the kernel
up to the last checkpoint, and at most one piece more; a cut connection is billed to the byte
(``SendfileInterrupted.sent``).

Why a server extension at all: uvicorn (0.54) does not implement the zero-copy extension and
litestar's ``File`` reads the file in Python, so without it every byte is read into Python and
written by asyncio. Measured server CPU per GB downloaded (docs/api.md): sendfile 0.39 s,
streamed blocks 1.19 s, litestar static files 0.64 s.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from litestar import Response
from litestar.response.base import ASGIResponse

from feedserver.api.body_bytes import BodyMeter
from feedserver.errors import IntegrityError

if TYPE_CHECKING:
    from litestar.app import Litestar
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.connection import Request
    from litestar.datastructures.cookie import Cookie
    from litestar.types import Receive, Send, TypeEncodersMap

ZEROCOPY = "http.response.zerocopysend"


class SendfileInterrupted(ConnectionError):
    """The body could not be sent whole: ``sent`` bytes of this message left (the peer went
    away, or, ``short``, the file ended before ``count``). The connection is closed."""

    def __init__(self, sent: int, *, short: bool = False) -> None:
        super().__init__(f"sendfile stopped after {sent} bytes" + (" (file too short)"
                                                                   if short else ""))
        self.sent = sent
        self.short = short


def supports_zerocopy(scope: Any) -> bool:
    """Whether the server serving ``scope`` takes ``http.response.zerocopysend`` messages."""
    extensions = scope.get("extensions") or {}
    return ZEROCOPY in extensions


class FileSegment(NamedTuple):
    """``[start, stop)`` of the local file ``path``, or of ``data`` when ``path`` is None (the
    literal bytes of a composed download: a WME archive's rebuilt tar headers)."""

    path: Path | None
    start: int
    stop: int
    data: bytes = b""


class _ASGIFileBody(ASGIResponse):
    _should_set_content_length = False

    def __init__(self, *, segments: Sequence[FileSegment], meter: BodyMeter, piece: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segments = segments
        self.meter = meter
        self.piece = max(1, piece)

    async def send_body(self, send: Send, receive: Receive) -> None:
        del receive  # a dropped client shows as a failed send
        meter = self.meter
        # litestar's Send type lists only the standard events; this server takes the extension
        send_any = cast("Callable[[dict[str, object]], Awaitable[None]]", send)
        try:
            for path, start, stop, data in self.segments:
                if path is None:  # a few literal bytes between stored parts
                    body = data[start:stop]
                    meter.ahead(len(body))
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    meter.sent(len(body))
                    continue
                with path.open("rb") as fh:  # a local file: microseconds, on the loop
                    pos = start
                    while pos < stop:
                        n = min(self.piece, stop - pos)
                        meter.ahead(n)
                        try:
                            await send_any({"type": ZEROCOPY, "file": fh, "offset": pos,
                                            "count": n, "more_body": True})
                        except SendfileInterrupted as exc:
                            meter.sent(exc.sent)
                            if exc.short:
                                raise IntegrityError(
                                    f"blob file {path.name} is shorter than its manifest says"
                                ) from exc
                            return
                        meter.sent(n)
                        pos += n
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            meter.done()


class FileBody(Response[bytes]):
    """A body of local file segments sent with ``http.response.zerocopysend``; only return
    it when ``supports_zerocopy(request.scope)``."""

    def __init__(self, segments: Sequence[FileSegment], meter: BodyMeter, *, piece: int,
                 status_code: int, media_type: str, headers: dict[str, str]) -> None:
        super().__init__(b"", status_code=status_code, media_type=media_type, headers=headers)
        self.segments = segments
        self.meter = meter
        self.piece = piece

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        del app, encoded_headers, type_encoders, media_type, status_code, request
        merged = {**headers, **self.headers} if headers is not None else self.headers
        return self.asgi_body(
            background=self.background or background,
            cookies=self.cookies if cookies is None else itertools.chain(self.cookies, cookies),
            headers=merged, is_head_response=is_head_response,
            media_type=str(self.media_type), status_code=self.status_code,
        )

    def asgi_body(self, **kwargs: Any) -> ASGIResponse:
        """The ASGI response that sends this body (``kwargs``: litestar's response fields)."""
        return _ASGIFileBody(segments=self.segments, meter=self.meter, piece=self.piece,
                             **kwargs)
