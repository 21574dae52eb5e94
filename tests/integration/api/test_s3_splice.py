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
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import Manifest, wme_archive
from feedserver.storage.blobs import SocketReads, open_blob_store
from tests.fixtures.articles import random_articles
from tests.fixtures.downloads import SYNTHETIC_ENWIKI, billed_bytes, snapshot_customer_key
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"


@dataclass
class World:
    data_dir: Path
    key: str
    manifest: Manifest
    whole: bytes
    server: ServerProcess


@pytest.fixture
def world(s3_settings: Settings) -> Iterator[World]:
    settings = msgspec.structs.replace(s3_settings, chunk_size=256 * 1024)
    blobs = open_blob_store(settings)
    assert isinstance(blobs, SocketReads) and blobs.splices()  # plain HTTP: spliced
    (manifest,) = build_from_records(SYNTHETIC_ENWIKI, random_articles(12, random_bytes=60_000),
                                     blobs, settings)
    assert len(manifest.chunks) >= 3  # ranges across chunk objects
    whole = b"".join(blobs.get_bytes(c.key) for c in manifest.chunks)
    key = snapshot_customer_key(settings.data_path / "feedserver.db")
    env = server_env(settings.data_path, blob_backend="s3",
                     s3_endpoint_url=str(settings.s3_endpoint_url),
                     s3_bucket=settings.s3_bucket, s3_access_key_id="testing",
                     s3_secret_access_key="testing")
    server = ServerProcess(env).start()
    try:
        yield World(settings.data_path, key, manifest, whole, server)
    finally:
        server.stop()


def _auth(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.key}", "Accept": "application/zstd"}


def test_ranges_and_whole_bodies_on_one_keep_alive_connection(world: World) -> None:
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
    assert billed_bytes(world.data_dir / "feedserver.db") == received


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


def test_a_client_reset_mid_body_is_billed_what_its_socket_took(world: World) -> None:
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
    cut = billed_bytes(world.data_dir / "feedserver.db") - size
    assert read <= cut < size
