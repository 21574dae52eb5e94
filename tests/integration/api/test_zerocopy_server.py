"""Downloads through ``feedserver serve`` (uvicorn with the zero-copy protocol: local chunk
files go out with ``sendfile``), as clients see them and as the ledger bills them.

1. The bytes are right: whole snapshot, one chunk, a Range across a chunk boundary, HEAD,
   several requests on one keep-alive connection (the protocol must leave the connection
   ready for the next request), in both representations: zstd NDJSON (chunk files only) and
   WME's tar.gz (stored deflate parts with literal rebuilt headers between them).
2. Usage equals the bytes the clients received, under 300 concurrent requests: whole
   snapshots, chunks and Ranges at once, then a graceful stop flushes the ledger.
3. Streamed (chunked) bodies, whose pieces the protocol writes unjoined
   (``feedserver.api.body_writes``): exact bytes read by a raw socket, keep-alive after
   them, HTTP/1.0; a reader that stops reading stalls the stream with bounded buffers.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import httpx
import msgspec
import pytest
import uvicorn
import zstandard

from feedserver.api.body_writes import BODY_PARTS
from feedserver.api.zerocopy_server import ZeroCopyH11Protocol
from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import Manifest, wme_archive
from feedserver.storage.blobs import FilesystemBlobStore
from tests.conftest import free_port
from tests.fixtures.articles import random_articles
from tests.fixtures.downloads import (
    SYNTHETIC_ENWIKI,
    billed_bytes,
    fetch_concurrently,
    snapshot_customer_key,
)
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"
CONCURRENT = 300
# Random text: incompressible, so every chunk file is about ``chunk_size`` bytes.
ARTICLE_BYTES = 60_000


@dataclass
class World:
    data_dir: Path
    key: str
    manifest: Manifest
    whole: bytes


@pytest.fixture
def world(tmp_path: Path) -> World:
    settings = Settings(data_dir=str(tmp_path), chunk_size=256 * 1024)
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    articles = random_articles(12, random_bytes=ARTICLE_BYTES)
    (manifest,) = build_from_records(SYNTHETIC_ENWIKI, articles, blobs, settings)
    assert len(manifest.chunks) >= 3  # Ranges across chunk files need several
    whole = b"".join(blobs.get_bytes(c.key) for c in manifest.chunks)
    key = snapshot_customer_key(tmp_path / "feedserver.db")
    return World(tmp_path, key, manifest, whole)


def test_bytes_are_right_and_connections_stay_usable(world: World) -> None:
    server = ServerProcess(server_env(world.data_dir)).start()
    try:
        auth = {"Authorization": f"Bearer {world.key}", "Accept": "application/zstd"}
        whole, first = world.whole, world.manifest.chunks[0]
        base = f"{server.url}/v2/snapshots/{SNAPSHOT}"
        with httpx.Client(timeout=60, headers=auth) as http:  # one keep-alive connection
            r = http.get(f"{base}/download")
            assert r.status_code == 200 and r.content == whole
            assert hashlib.sha256(r.content).hexdigest() == world.manifest.sha256
            # Across the first chunk boundary: two files, two sendfile pieces.
            start, stop = first.size - 5, first.size + 7
            r = http.get(f"{base}/download", headers={"Range": f"bytes={start}-{stop - 1}"})
            assert r.status_code == 206 and r.content == whole[start:stop]
            assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(whole)}"
            r = http.get(f"{base}/chunks/{SNAPSHOT}_chunk_0/download")
            assert r.status_code == 200 and r.content == whole[:first.size]
            r = http.head(f"{base}/download")
            assert r.status_code == 200 and r.content == b""
            assert int(r.headers["content-length"]) == len(whole)
            # Several Ranges: multipart, streamed (not zero-copy), still right.
            r = http.get(f"{base}/download", headers={"Range": "bytes=0-1,-2"})
            assert r.status_code == 206 and whole[:2] in r.content and whole[-2:] in r.content
            r = http.get(f"{base}/download", headers={"Range": "bytes=1-2"})
            assert r.content == whole[1:3]  # the connection still answers correctly
            # WME's tar.gz: its checksum, the NDJSON inside equals the zstd download's, and a
            # Range over the literal header bytes and into the first stored part.
            gz = wme_archive(world.manifest.representations)
            assert gz is not None
            r = http.get(f"{base}/download", headers={"Accept": "application/gzip"})
            assert r.status_code == 200
            archive = r.content
            assert hashlib.sha256(archive).hexdigest() == gz.archive.sha256
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r|gz") as tar:
                inside = b"".join(tar.extractfile(m).read() for m in tar)  # type: ignore[union-attr]
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(whole),
                                                                read_across_frames=True)
            assert inside == reader.read()
            r = http.get(f"{base}/download", headers={"Accept": "application/gzip",
                                                      "Range": "bytes=5-4999"})
            assert r.status_code == 206 and r.content == archive[5:5000]
    finally:
        server.stop()


def test_usage_equals_bytes_received_under_300_concurrent_requests(world: World) -> None:
    server = ServerProcess(server_env(world.data_dir)).start()
    received = 0
    try:
        auth = {"Authorization": f"Bearer {world.key}", "Accept": "application/zstd"}
        base = f"{server.url}/v2/snapshots/{SNAPSHOT}"
        size = len(world.whole)
        chunk_ids = world.manifest.chunk_identifiers()

        def request(i: int) -> tuple[str, dict[str, str], bytes]:
            if i % 3 == 0:
                return f"{base}/download", {}, world.whole
            if i % 3 == 1:
                chunk = chunk_ids[i % len(chunk_ids)]
                index = int(chunk.rsplit("_", 1)[1])
                start = sum(c.size for c in world.manifest.chunks[:index])
                want = world.whole[start:start + world.manifest.chunks[index].size]
                return f"{base}/chunks/{chunk}/download", {}, want
            lo = (i * 7919) % (size - 1)
            hi = min(size - 1, lo + 100_000)
            return f"{base}/download", {"Range": f"bytes={lo}-{hi}"}, world.whole[lo:hi + 1]

        received = fetch_concurrently(request, auth, CONCURRENT)
    finally:
        server.stop()  # graceful: the writer flushes every final record to the ledger
    assert received > 0
    assert billed_bytes(world.data_dir / "feedserver.db") == received


# --- streamed (chunked) bodies: framing written by the protocol, h11 kept in step ----------

# Sizes that cross every edge of the framing: one byte, an empty message (nothing on the
# wire), hex lengths of one to six digits, the 60 KB of a realtime tick and several MB.
STREAM_SIZES = (1, 0, 15, 16, 255, 4096, 60_000, 1 << 20, 3_000_001, 7)
SLOW_PIECE = 64 * 1024
SLOW_PIECES = 1_000  # 64 MB: far beyond what loopback socket buffers hold
STALL_TIMEOUT = 60.0


def _pieces() -> list[bytes]:
    patterns = [bytes((i * 7 + j) % 251 for j in range(251)) for i in range(len(STREAM_SIZES))]
    return [(p * (n // 251 + 1))[:n] for p, n in zip(patterns, STREAM_SIZES, strict=True)]


class _Streams:
    """ASGI app: ``/pieces`` streams ``_pieces()``; ``/slow`` streams SLOW_PIECES pieces of
    SLOW_PIECE bytes and counts the sends that returned (what the server took)."""

    def __init__(self) -> None:
        self.taken = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        slow = scope["path"] == "/slow"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        if scope["path"] == "/parts":
            assert BODY_PARTS in scope["extensions"]  # advertised by the protocol
            for group in _groups():
                await send({"type": "http.response.body", "body": b"", BODY_PARTS: group,
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        pieces = [bytes([i % 256]) * SLOW_PIECE for i in range(SLOW_PIECES)] if slow \
            else _pieces()
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            self.taken += len(piece)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _groups() -> list[tuple[bytes, ...]]:
    """``_pieces()`` as body messages of several pieces each (one, two, three, ...)."""
    pieces, groups, size = _pieces(), [], 1
    while pieces:
        groups.append(tuple(pieces[:size]))
        pieces, size = pieces[size:], size + 1
    return groups


async def _serve(app: _Streams) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", http=ZeroCopyH11Protocol))
    task = asyncio.create_task(server.serve())
    for _ in range(1_000):  # bounded: 20 s
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    return server, task, port


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(task, 30)


def _h11_chunked(pieces: list[bytes]) -> bytes:
    """h11's own framing of ``pieces`` as a chunked response body (the oracle)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    conn.send(h11.Response(status_code=200, headers=[]))
    wire = b"".join(conn.send(h11.Data(data=p)) or b"" for p in pieces)
    return wire + (conn.send(h11.EndOfMessage()) or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response: (head, body) with the chunked framing checked and removed."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert b"transfer-encoding: chunked" in head.lower()
    body = bytearray()
    for _ in range(100_000):  # bounded: far more chunks than any response here has
        size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), 30), 16)
        data = await asyncio.wait_for(reader.readexactly(size + 2), 30)
        assert data.endswith(b"\r\n")
        if size == 0:
            return head, bytes(body)
        body += data[:-2]
    raise AssertionError("no last chunk")


async def test_chunked_stream_bytes_are_exact_and_the_connection_stays_usable() -> None:
    # The protocol writes a chunked body's framing itself after h11 framed the first piece;
    # the bytes must be h11's, and h11 must still end the body and take the next request
    # on the same connection (its state never saw a difference).
    expected = b"".join(_pieces())
    server, task, port = await _serve(_Streams())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"GET /pieces HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200")
            wire = _h11_chunked(_pieces())  # byte for byte what h11 alone would write
            assert await asyncio.wait_for(reader.readexactly(len(wire)), 30) == wire
        writer.close()
        # HTTP/1.0: no chunked encoding; h11 frames by closing, the bytes are still exact.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /pieces HTTP/1.0\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 30)
        assert raw.split(b"\r\n\r\n", 1)[1] == expected
        writer.close()
    finally:
        await _stop(server, task)


async def test_a_message_of_several_pieces_is_one_chunk_of_exactly_their_bytes() -> None:
    # The realtime stream hands over several shared ticks as one message (BODY_PARTS),
    # written unjoined: on the wire each message must be exactly the chunk h11 would write
    # for the pieces joined, and the connection must stay usable (h11's state unchanged).
    server, task, port = await _serve(_Streams())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        wire = _h11_chunked([b"".join(group) for group in _groups()])
        for _ in range(2):
            writer.write(b"GET /parts HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(reader.readexactly(len(wire)), 30) == wire
        writer.close()
        # HTTP/1.0 (h11 frames by closing): the pieces joined, nothing else.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /parts HTTP/1.0\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 30)
        assert raw.split(b"\r\n\r\n", 1)[1] == b"".join(_pieces())
        writer.close()
    finally:
        await _stop(server, task)


async def test_a_reader_that_stops_reading_stalls_the_stream_with_bounded_buffers() -> None:
    # A subscriber that never reads must not make the server buffer without bound: the
    # transport pauses the protocol above its high-water mark and the next send waits.
    app = _Streams()
    server, task, port = await _serve(app)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled, last = 0, -1
        for _ in range(int(STALL_TIMEOUT / 0.05)):  # until the app stops making progress
            await asyncio.sleep(0.05)
            stalled = stalled + 1 if app.taken == last else 0
            last = app.taken
            if stalled >= 10:
                break
        assert stalled >= 10, "the server kept taking data from a reader that does not read"
        # What the server holds: the kernel's socket buffers, plus the transport's buffer
        # (at most its high-water mark plus one piece).
        assert app.taken < SLOW_PIECES * SLOW_PIECE // 4
        (protocol,) = server.server_state.connections
        assert protocol.transport.get_write_buffer_size() <= 64 * 1024 + SLOW_PIECE
        # Reading again resumes the stream; every byte arrives, in order.
        _, body = await _read_response(reader)
        assert len(body) == SLOW_PIECES * SLOW_PIECE
        assert all(body[i * SLOW_PIECE] == i % 256 and body[(i + 1) * SLOW_PIECE - 1] == i % 256
                   for i in range(SLOW_PIECES))
        writer.close()
    finally:
        await _stop(server, task)


@pytest.mark.parametrize("request_bytes", [
    "GET /v2/snapshots?limit=٣ HTTP/1.1\r\nHost: x\r\n\r\n".encode(),  # raw UTF-8, not %-encoded
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",  # a header line without a colon
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the plain port
])
async def test_a_request_h11_cannot_parse_gets_a_problem_document(request_bytes: bytes) -> None:
    # Answered by the protocol before any app runs: still RFC 9457 problem+json, as every
    # error the API sends (uvicorn's own answer is text/plain), and the connection closes.
    server, task, port = await _serve(_Streams())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        raw = await asyncio.wait_for(reader.read(), 30)  # until the server closes
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] == "HTTP/1.1 400 Bad Request"
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close" and int(headers["content-length"]) == len(body)
        problem = msgspec.json.decode(body)
        assert problem["status"] == 400 and problem["type"].endswith("/bad-request")
        assert problem["detail"] and problem["title"] == "Bad request"
    finally:
        await _stop(server, task)
