"""``api.body_writes``: the protocol's own chunk framing equals h11's and leaves h11's state
where h11's would; ``write_parts`` puts pieces on a real socket in order, whatever part of
them the socket takes at once."""

from __future__ import annotations

import asyncio
import socket

import h11
from hypothesis import given
from hypothesis import strategies as st

from feedserver.api.body_writes import _after, is_chunk, write_parts


def _streaming() -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    conn.send(h11.Response(status_code=200, headers=[]))
    return conn


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8))
def test_h11_frames_each_piece_as_the_protocol_does(pieces: list[bytes]) -> None:
    # Guards the shortcut for h11 upgrades: after the first piece the protocol frames
    # chunks itself, which is only right while h11's chunked writer has no state and a Data
    # event moves no state.
    conn = _streaming()
    for piece in pieces:
        parts = conn.send_with_data_passthrough(h11.Data(data=piece))
        assert parts is not None and is_chunk(parts, piece)
        assert conn.our_state is h11.SEND_BODY
    assert conn.send(h11.EndOfMessage()) == b"0\r\n\r\n"


def test_other_framings_are_not_taken_for_chunks() -> None:
    # Content-Length and HTTP/1.0 (close-delimited) bodies: h11 frames every write.
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    conn.send(h11.Response(status_code=200, headers=[("content-length", "5")]))
    parts = conn.send_with_data_passthrough(h11.Data(data=b"hello"))
    assert parts is not None and not is_chunk(parts, b"hello")
    old = h11.Connection(h11.SERVER)
    old.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    old.next_event()
    old.send(h11.Response(status_code=200, headers=[]))
    parts = old.send_with_data_passthrough(h11.Data(data=b"hello"))
    assert parts is not None and not is_chunk(parts, b"hello")


@given(st.lists(st.binary(max_size=20), max_size=5), st.integers(min_value=0, max_value=120))
def test_after_drops_exactly_the_sent_prefix(parts: list[bytes], sent: int) -> None:
    whole = b"".join(parts)
    assert b"".join(bytes(p) for p in _after(parts, sent)) == whole[sent:]


async def test_write_parts_keeps_order_when_the_socket_takes_part() -> None:
    # A socket with small buffers takes a fraction of a 1 MB write: the rest is buffered by
    # the transport, then more pieces (through the buffer, never ahead of it) and all of
    # it arrives in order.
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    a.setblocking(False)
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
    pieces = [b"%x\r\n" % (1 << 20), bytes(range(256)) * 4096, b"\r\n", b"tail", b"end"]
    try:
        write_parts(transport, pieces[:3])
        assert transport.get_write_buffer_size() > 0  # the socket took only part of it
        write_parts(transport, pieces[3:])
        b.setblocking(False)
        received = bytearray()
        for _ in range(10_000):  # bounded: 1 MB in reads of up to 64 KB
            if len(received) == sum(map(len, pieces)):
                break
            try:
                received += b.recv(65536)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        assert bytes(received) == b"".join(pieces)
    finally:
        transport.close()
        b.close()
