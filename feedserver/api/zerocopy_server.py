"""``http.response.zerocopysend`` for uvicorn: the server side of zero-copy file bodies.

uvicorn does not implement the ASGI zero-copy extension, so ``ZeroCopyH11Protocol`` adds it
to uvicorn's h11 protocol (``feedserver serve`` runs with it): it advertises the extension in
``scope["extensions"]`` and performs each message with ``loop.sendfile``, which waits for the
transport's buffer (the status line and headers) to drain, then calls ``os.sendfile`` until
``count`` bytes are in the socket. h11 still frames the body: the file is handed to it as an
object whose ``len()`` is the count (``Connection.send_with_data_passthrough``, h11's own
sendfile support), so ``Content-Length`` is enforced as for bytes. A failure raises
``SendfileInterrupted`` with the bytes that left (``loop.sendfile`` keeps the file position
exact even when it raises) and closes the connection (``feedserver.api.zerocopy``).

On a plain TCP connection it also advertises ``feedserver.splice`` (``splice_relay``): a
message ``{"fd", "count"}`` moves the next ``count`` bytes arriving on the socket ``fd`` (a
store's response) to the client with ``splice(2)``, framed by h11 the same way, once the
transport's buffer is empty; a failure raises ``SpliceInterrupted`` with the bytes that
reached the client and closes the connection.

A request h11 cannot parse is answered with a problem document, as every error of the API is
(``send_400_response``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import IO, Any

import h11
import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from feedserver.api.body_writes import BODY_PARTS, Framing, send_body, socket_fd
from feedserver.api.problems import PROBLEM_TYPE, problem_body
from feedserver.api.splice_relay import SPLICE, SpliceInterrupted, relay
from feedserver.api.zerocopy import ZEROCOPY, SendfileInterrupted

_App = Callable[[Any, Any, Any], Awaitable[None]]
SOURCE_TIMEOUT = 60.0  # seconds a spliced store socket may stay silent (botocore's read timeout)


class _Span:
    """What h11 frames instead of bytes: a length (``Content-Length`` accounting)."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


class ZeroCopyH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus ``http.response.zerocopysend`` (``uvicorn.run(...,
    http=ZeroCopyH11Protocol)``)."""

    def __init__(self, config: Config, server_state: ServerState,
                 app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None
                 ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.app = self._with_zerocopy(self.app)

    def _with_zerocopy(self, inner: _App) -> _App:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            cycle = self.cycle
            # The cycle uvicorn made for THIS request (h11 reads no further request on the
            # connection until it is complete).
            if scope["type"] != "http" or cycle is None or cycle.scope is not scope:
                await inner(scope, receive, send)
                return
            extensions = {**(scope.get("extensions") or {}), ZEROCOPY: {}, BODY_PARTS: {}}
            if hasattr(os, "splice") and socket_fd(cycle.transport) is not None:
                extensions[SPLICE] = {}
            scope["extensions"] = extensions
            framing = Framing()

            async def zerocopy_send(message: Any) -> None:
                if message["type"] == ZEROCOPY:
                    await send_file(cycle, message)
                elif message["type"] == SPLICE:
                    await send_spliced(cycle, message)
                elif message["type"] == "http.response.body" and message.get("more_body"):
                    await send_body(cycle, message, framing)  # streamed pieces, never joined
                else:
                    await send(message)

            await inner(scope, receive, zerocopy_send)

        return app

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (a request line with raw non-ASCII bytes, a broken
        header) is answered before the app sees it: as every other error, an RFC 9457
        problem (uvicorn's own answer is plain text), then the connection is closed."""
        problem = problem_body(400, "bad-request", "Bad request", msg, "")
        del problem["instance"]  # no request to name: it could not be parsed
        body = msgspec.json.encode(problem)
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=[
            (b"content-type", PROBLEM_TYPE.encode()), (b"content-length", b"%d" % len(body)),
            (b"connection", b"close")], reason=b"Bad Request")) or b"")
        self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()


async def send_file(cycle: RequestResponseCycle, message: Any) -> None:
    """Perform one ``http.response.zerocopysend`` message on uvicorn's ``cycle``."""
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError(f"unexpected ASGI message {ZEROCOPY!r}")
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        raise SendfileInterrupted(0)
    file: IO[bytes] = message["file"]
    offset = int(message.get("offset") or 0)
    count = message.get("count")
    if count is None:
        count = max(0, file_size(file) - offset)
    more_body = bool(message.get("more_body", False))
    if cycle.scope["method"] == "HEAD":
        count = 0

    async def move(n: int) -> None:
        await _sendfile(cycle, file, offset, n)

    await _send_span(cycle, count, move, more_body=more_body)


async def _send_span(cycle: RequestResponseCycle, count: int,
                     move: Callable[[int], Awaitable[None]], *, more_body: bool) -> None:
    """``count`` body bytes that Python does not hold, framed by h11 (``move(n)`` sends
    them), then the end of the response when this was its last message."""
    # h11 documents non-bytes data for exactly this (len() = bytes that will be written)
    span = h11.Data(data=_Span(count))  # type: ignore[arg-type]
    for part in cycle.conn.send_with_data_passthrough(span) or ():
        if not isinstance(part, _Span):
            cycle.transport.write(part)  # framing (chunked encoding), never with a length
            continue
        if part.count:
            await move(part.count)
    if not more_body:
        _complete(cycle)


def _complete(cycle: RequestResponseCycle) -> None:
    cycle.response_complete = True
    cycle.message_event.set()
    cycle.transport.write(cycle.conn.send(h11.EndOfMessage()) or b"")
    if cycle.conn.our_state is h11.MUST_CLOSE or not cycle.keep_alive:
        cycle.conn.send(h11.ConnectionClosed())
        cycle.transport.close()
    cycle.on_response()


async def send_spliced(cycle: RequestResponseCycle, message: Any) -> None:
    """Perform one ``feedserver.splice`` message on uvicorn's ``cycle``."""
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError(f"unexpected ASGI message {SPLICE!r}")
    src = int(message["fd"])
    count = 0 if cycle.scope["method"] == "HEAD" else int(message["count"])

    async def move(n: int) -> None:
        await _emptied(cycle)
        dst = socket_fd(cycle.transport)
        if cycle.disconnected or dst is None or cycle.transport.is_closing():
            _abort(cycle)
            raise SpliceInterrupted(0, reason="client gone")
        try:
            await relay(src, dst, n, timeout=SOURCE_TIMEOUT)
        except SpliceInterrupted:
            _abort(cycle)
            raise

    await _send_span(cycle, count, move, more_body=bool(message.get("more_body", False)))


async def _emptied(cycle: RequestResponseCycle) -> None:
    """Wait until the transport has written everything it holds (the spliced bytes must
    follow it): the flow control's pause with both limits at 0, then the old limits."""
    transport = cycle.transport
    if not transport.get_write_buffer_size() or cycle.disconnected:
        return
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        await cycle.flow.drain()
    finally:
        transport.set_write_buffer_limits(high=high, low=low)


async def _sendfile(cycle: RequestResponseCycle, file: IO[bytes], offset: int,
                    count: int) -> None:
    loop = asyncio.get_running_loop()
    file.seek(offset)  # loop.sendfile leaves the position after the last byte sent
    try:
        sent = await loop.sendfile(cycle.transport, file, offset, count)
    except (OSError, RuntimeError) as exc:  # peer gone (EPIPE, ECONNRESET), transport closing
        _abort(cycle)
        raise SendfileInterrupted(max(0, file.tell() - offset)) from exc
    if sent < count:  # the file ended early: headers promised more; never pad
        _abort(cycle)
        raise SendfileInterrupted(sent, short=True)


def _abort(cycle: RequestResponseCycle) -> None:
    cycle.disconnected = True  # uvicorn then expects no complete response
    cycle.message_event.set()
    cycle.transport.close()


def file_size(file: IO[bytes]) -> int:
    return os.fstat(file.fileno()).st_size
