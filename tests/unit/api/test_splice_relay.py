"""``splice_relay.relay`` on real loopback TCP sockets: the bytes it moves, that it never
reads past its count (the store's connection may carry a next response), and what it reports
when either side fails. Real sockets, because the point is the kernel's behaviour (partial
splices, a full client socket, a reset) and not a model of it."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.api.splice_relay import SpliceInterrupted, relay

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "splice"), reason="Linux only")


@contextmanager
def _pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair (writer, reader); both non-blocking on the relay side."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


async def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    for _ in range(n + 1):  # bounded: every recv returns at least one byte or EOF
        if len(out) >= n:
            break
        got = await loop.sock_recv(sock, n - len(out))
        if not got:
            break
        out += got
    return bytes(out)


async def _write_all(sock: socket.socket, pieces: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    for piece in pieces:
        await loop.sock_sendall(sock, piece)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=2_000).map(lambda b: b * 150),
       cuts=st.lists(st.integers(min_value=0), max_size=8),
       extra=st.binary(max_size=100))
def test_moves_exactly_count_bytes_and_leaves_what_follows(data: bytes, cuts: list[int],
                                                           extra: bytes) -> None:
    # The source writes in arbitrary pieces (splice returns whatever arrived so far), and
    # bytes past ``count`` (a next response on a keep-alive connection) stay on its socket.
    async def run() -> None:
        with _pair() as (store, src), _pair() as (dst, client):
            for s in (store, src, dst, client):
                s.setblocking(False)
            writer = asyncio.ensure_future(_write_all(store, [*_pieces(data, cuts), extra]))
            reader = asyncio.ensure_future(_recv_exactly(client, len(data)))
            await relay(src.fileno(), dst.fileno(), len(data), timeout=30)
            assert await asyncio.wait_for(reader, 30) == data
            await writer
            assert await asyncio.wait_for(_recv_exactly(src, len(extra)), 30) == extra

    asyncio.run(run())


async def test_a_client_that_goes_away_is_reported_with_the_bytes_sent() -> None:
    # More than the loopback buffers hold, so the relay is still busy when the reset comes;
    # what it reports is never more than it moved.
    size = 64 * 1024 * 1024
    with _pair() as (store, src), _pair() as (dst, client):
        for s in (store, src, dst, client):
            s.setblocking(False)
        writer = asyncio.ensure_future(_write_all(store, [b"x" * (1 << 20)] * 64))
        relay_task = asyncio.ensure_future(relay(src.fileno(), dst.fileno(), size, timeout=30))
        assert await asyncio.wait_for(_recv_exactly(client, 1000), 30)  # the body started
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # with SO_LINGER 0: a reset, as a client killed mid-body
        # the relay must stop on the reset, not wait for the client to read
        with pytest.raises(SpliceInterrupted) as cut:
            await asyncio.wait_for(relay_task, 60)
        writer.cancel()
    assert not cut.value.source
    assert 0 <= cut.value.sent < size


async def test_a_source_that_ends_early_is_reported_as_the_source() -> None:
    with _pair() as (store, src), _pair() as (dst, client):
        for s in (src, dst, client):
            s.setblocking(False)
        store.sendall(b"y" * 1000)
        store.shutdown(socket.SHUT_WR)  # the store's answer ends 1000 bytes in
        reader = asyncio.ensure_future(_recv_exactly(client, 1000))
        with pytest.raises(SpliceInterrupted) as short:
            await relay(src.fileno(), dst.fileno(), 5000, timeout=30)
        assert await asyncio.wait_for(reader, 30) == b"y" * 1000
    assert short.value.source
    assert short.value.sent == 1000


async def test_a_silent_source_times_out_as_the_source() -> None:
    # Nothing ever arrives: the relay gives up after its timeout instead of holding the
    # client and the store's connection forever.
    with _pair() as (_store, src), _pair() as (dst, _client):
        src.setblocking(False)
        dst.setblocking(False)
        with pytest.raises(SpliceInterrupted) as silent:
            await relay(src.fileno(), dst.fileno(), 10, timeout=0.2)
    assert silent.value.source
    assert silent.value.sent == 0
