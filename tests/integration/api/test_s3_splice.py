"""Proxied S3 downloads spliced from the store's socket to the client's (``feedserver serve``
on plain TCP, a real moto_server over plain HTTP: the ``feedserver.splice`` path), as clients
see them and as the ledger bills them.

1. Any single Range (hypothesis) and the whole download, on ONE keep-alive connection: the
   bytes are the stored ones, and the connection stays usable after each spliced body (h11
   framed them, the transport was empty before each splice). WME's tar.gz mixes literal
   header bytes with spliced parts. The ledger bills exactly the bytes received.
2. A client reset mid-body: billed at least what it read and at most the body (the bytes the
   server's socket took), and the server goes on serving (the store's connection of the cut
   body is closed, never reused mid-body).
"""

from __future__ import annotations

import io
import socket
import struct
import tarfile
from collections.abc import Iterator

import httpx
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.config import Settings
from feedserver.feeds.snapshots.manifest import wme_archive
from feedserver.storage.blobs import SocketReads
from tests.fixtures.downloads import billed_bytes
from tests.fixtures.s3_served import S3Served, s3_served

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"


@pytest.fixture
def world(s3_settings: Settings) -> Iterator[S3Served]:
    with s3_served(s3_settings) as served:
        assert isinstance(served.blobs, SocketReads) and served.blobs.splices()  # plain HTTP
        yield served


def _auth(world: S3Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.key}", "Accept": "application/zstd"}


def test_ranges_and_whole_bodies_on_one_keep_alive_connection(world: S3Served) -> None:
    size = len(world.whole)
    url = f"{world.server.url}/v2/snapshots/{SNAPSHOT}/download"
    received = 0
    with httpx.Client(timeout=60, headers=_auth(world)) as http:  # one keep-alive connection

        @settings(max_examples=40, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(start=st.integers(min_value=0, max_value=size - 1),
               length=st.one_of(st.integers(min_value=1, max_value=20_000),
                                st.integers(min_value=1, max_value=size)))
        def one_range(start: int, length: int) -> None:
            nonlocal received
            stop = min(size, start + length)
            r = http.get(url, headers={"Range": f"bytes={start}-{stop - 1}"})
            assert r.status_code == 206
            assert r.content == world.whole[start:stop]
            received += len(r.content)

        one_range()
        r = http.get(url)
        assert r.status_code == 200 and r.content == world.whole
        received += len(r.content)
        # WME's tar.gz: literal rebuilt headers between spliced stored parts
        gz = wme_archive(world.manifest.representations)
        assert gz is not None
        r = http.get(url, headers={"Accept": "application/gzip"})
        assert r.status_code == 200
        archive = r.content
        received += len(archive)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r|gz") as tar:
            inside = b"".join(tar.extractfile(m).read() for m in tar)  # type: ignore[union-attr]
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(world.whole),
                                                            read_across_frames=True)
        assert inside == reader.read()
        r = http.get(url, headers={"Accept": "application/gzip", "Range": "bytes=5-4999"})
        assert r.status_code == 206 and r.content == archive[5:5000]
        received += len(r.content)
    world.server.stop()  # graceful: every final usage record reaches the ledger
    assert billed_bytes(world.settings.data_path / "feedserver.db") == received


def _read_some(sock: socket.socket, at_least: int) -> int:
    """Reads the response head and at least ``at_least`` body bytes; returns the body bytes."""
    got = b""
    for _ in range(100_000):  # bounded: every recv returns at least one byte or EOF
        block = sock.recv(65536)
        assert block, "the server closed before the body"
        got += block
        head, sep, body = got.partition(b"\r\n\r\n")
        if sep and len(body) >= at_least:
            assert head.startswith(b"HTTP/1.1 200")
            return len(body)
    raise AssertionError("no body")


def test_a_client_reset_mid_body_is_billed_what_its_socket_took(world: S3Served) -> None:
    size = len(world.whole)
    host, port = world.server.url.removeprefix("http://").split(":")
    request = (f"GET /v2/snapshots/{SNAPSHOT}/download HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: Bearer {world.key}\r\nAccept: application/zstd\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        # a small receive buffer, so the server cannot have sent the whole body already
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request.encode())
        read = _read_some(sock, 1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # closed with SO_LINGER 0: a reset, as a client killed mid-body
    with httpx.Client(timeout=60, headers=_auth(world)) as http:  # the server goes on
        r = http.get(f"{world.server.url}/v2/snapshots/{SNAPSHOT}/download")
        assert r.status_code == 200 and r.content == world.whole
    world.server.stop()
    cut = billed_bytes(world.settings.data_path / "feedserver.db") - size
    assert read <= cut < size
