"""Streamed body writes for uvicorn's h11 protocol without joining framing and data.

uvicorn performs each ``http.response.body`` message with ``h11.Connection.send``, which joins
a chunked response's pieces (the chunk-size line, the data, CRLF) into one new bytes object:
a copy of every write (7% of a realtime worker's samples at 1,000 subscribers, 60 KB writes,
see docs/realtime.md). ``send_body`` performs the same message with h11's
``send_with_data_passthrough``: h11 still frames the body and keeps the connection's state
(the ``Data`` event is processed exactly as by ``send``, Content-Length still enforced), but
hands the pieces back unjoined, and ``write_parts`` gives them to the socket in one
``writev(2)`` (scatter/gather: the kernel copies each piece straight into the socket buffer).

Ordering and flow control stay the transport's: the pieces go out directly only when the
transport holds nothing yet to send (so nothing can overtake buffered bytes); whatever the
socket did not take goes to ``transport.write``, which buffers it and pauses the protocol
above its high-water mark, and the next message waits for the drain first (as uvicorn's
``send``): a slow reader holds at most the high-water mark plus one write on the server.
Python 3.12's selector transport does the same itself (``writelines`` with ``sendmsg``, no
join), so there ``write_parts`` is ``transport.writelines``; 3.11's joins.

A body message may also carry its data as several byte strings (``BODY_PARTS``, advertised in
``scope["extensions"]`` by ``feedserver serve``'s protocol): they go out as ONE chunk, the
pieces in the same ``writev``, never joined. The realtime stream writes a subscriber that is
behind as several shared, already rendered ticks at once this way (one write instead of one
per tick, and no per-stream copy of the ticks).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import RequestResponseCycle

_NATIVE_WRITELINES = sys.version_info >= (3, 12)
BODY_PARTS = "feedserver.body_parts"  # extension + message key: the body as several pieces
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX") - 2)  # pieces per writev, with the framing


class Framing:
    """What one response's first streamed write showed of h11's framing (per request)."""

    __slots__ = ("chunked",)

    def __init__(self) -> None:
        self.chunked: bool | None = None  # None: nothing streamed yet


async def send_body(cycle: RequestResponseCycle, message: Any, framing: Framing) -> None:
    """Perform one ``http.response.body`` message with ``more_body`` true on ``cycle``
    (uvicorn's ``send`` performs the last one: completion, keep-alive, close)."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return
    pieces: Sequence[bytes] = message.get(BODY_PARTS) or (message.get("body", b""),)
    if not cycle.response_started or cycle.response_complete:
        # uvicorn raises its own error for a misplaced message
        await cycle.send({"type": "http.response.body", "body": b"".join(pieces),
                          "more_body": True})
        return
    size = sum(map(len, pieces))
    if not size or cycle.scope["method"] == "HEAD":
        return  # h11 writes nothing for empty data and its state does not move
    parts: Sequence[bytes]
    if framing.chunked and cycle.conn.our_state is h11.SEND_BODY and len(pieces) <= _IOV_MAX:
        # What h11 itself returns for this Data event (its first one was checked): the
        # chunked writer has no state and SEND_BODY has no transition on Data.
        parts = (b"%x\r\n" % size, *pieces, b"\r\n")
    else:
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        parts = cycle.conn.send_with_data_passthrough(h11.Data(data=body)) or ()
        if framing.chunked is None:
            framing.chunked = is_chunk(parts, body)
    if parts:
        write_parts(cycle.transport, parts)


def is_chunk(parts: Sequence[bytes], body: bytes) -> bool:
    """Whether h11 framed ``body`` as one chunk of a chunked body (and nothing else)."""
    return (len(parts) == 3 and parts[1] is body and parts[0] == b"%x\r\n" % len(body)
            and parts[2] == b"\r\n")


def write_parts(transport: asyncio.Transport, parts: Sequence[bytes]) -> None:
    """Write ``parts`` in order to ``transport``, without joining them."""
    if len(parts) == 1:
        transport.write(parts[0])
        return
    if _NATIVE_WRITELINES:
        transport.writelines(parts)
        return
    rest: Sequence[bytes | memoryview] = parts
    fd = socket_fd(transport)
    if fd is not None and not transport.get_write_buffer_size() and not transport.is_closing():
        try:
            sent = os.writev(fd, parts)
        except OSError:  # would block, or the peer is gone: the transport meets it itself
            sent = 0
        rest = _after(parts, sent)
    for part in rest:
        transport.write(part)


def socket_fd(transport: asyncio.Transport) -> int | None:
    """The socket under a plain TCP transport; None under TLS (its bytes must be
    encrypted by the transport) or anything that is not a socket."""
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


def _after(parts: Sequence[bytes], sent: int) -> list[bytes | memoryview]:
    """What is left of ``parts`` once their first ``sent`` bytes left."""
    rest: list[bytes | memoryview] = []
    for part in parts:
        if sent >= len(part):
            sent -= len(part)
            continue
        rest.append(memoryview(part)[sent:] if sent else part)
        sent = 0
    return rest
