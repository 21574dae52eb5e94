"""Issue 11, item 9: a download cut by ``kill -9`` of the server is still billed.

A body still streaming journals cumulative checkpoints (every ``usage_checkpoint_bytes`` or
``usage_checkpoint_seconds``), like the realtime stream does, and the journal is replayed at the
next start. Three slow clients (small receive buffers, then they stop reading) keep the server
mid-body; the server is killed; each client then drains what the kernel still delivers. The
ledger must hold every byte the clients received, and no more than the one message per
download that was still in the dead process's buffers.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from feedserver.config import Settings
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.metering.ledger import Ledger
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.articles import random_articles
from tests.fixtures.downloads import (
    SYNTHETIC_ENWIKI,
    snapshot_customer_key,
)
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

SNAPSHOT = "enwiki_namespace_0"
CLIENTS = 3
READ_BEFORE_STALL = 2 * 1024 * 1024
# The dead process may have written at most this much past what reached the kernel: the last
# message (one chunk file here) plus what asyncio's transport still buffered below its mark.
TRANSPORT_SLACK = 64 * 1024

# Random text: incompressible, so the snapshot is far bigger than the socket buffers
# and the server is really mid-body when it dies.
ARTICLE_BYTES = 450_000


@dataclass
class World:
    data_dir: Path
    key: str


@pytest.fixture
def world(tmp_path: Path) -> World:
    settings = Settings(data_dir=str(tmp_path), chunk_size=1024 * 1024)
    build_from_records(SYNTHETIC_ENWIKI, random_articles(40, random_bytes=ARTICLE_BYTES),
                       FilesystemBlobStore(tmp_path / "blobs"), settings)
    key = snapshot_customer_key(tmp_path / "feedserver.db")
    return World(tmp_path, key)


class SlowClient:
    """A raw HTTP/1.1 download with a tiny receive buffer, read only as far as told."""

    def __init__(self, port: int, key: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET /v2/snapshots/{SNAPSHOT}/download HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {key}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            part = self.sock.recv(4096)
            assert part, "connection closed before the headers"
            head += part
        status, _, rest = head.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200"), status
        self.received = len(rest)

    def read_until(self, n: int) -> None:
        while self.received < n:
            part = self.sock.recv(65536)
            assert part, "the body ended before the server was killed"
            self.received += len(part)

    def drain(self) -> None:
        """Whatever the kernel still delivers after the server died, until EOF."""
        try:
            while part := self.sock.recv(65536):
                self.received += len(part)
        except (ConnectionResetError, TimeoutError):
            pass
        finally:
            self.sock.close()


def _ledger(data_dir: Path) -> tuple[dict[str, int], bool]:
    db = SQLiteDatabase(data_dir / "feedserver.db")
    try:
        rows = db.fetchall("SELECT meter, SUM(quantity) FROM usage_ledger WHERE feed = 'snapshots' "
                           "GROUP BY meter")
        return {str(m): int(q) for m, q in rows}, Ledger(db).verify().ok
    finally:
        db.close()


def test_kill_9_mid_download_bills_up_to_the_last_checkpoint(world: World) -> None:
    env = server_env(world.data_dir, usage_checkpoint_bytes="1",
                     usage_checkpoint_seconds="3600", ledger_flush_seconds="3600",
                     ledger_batch_size="1000000")
    server = ServerProcess(env).start()
    try:
        listing = httpx.get(f"{server.url}/v2/snapshots/{SNAPSHOT}/chunks",
                            headers={"Authorization": f"Bearer {world.key}"}, timeout=30)
        assert listing.status_code == 200, listing.text
        sizes = [int(c["size_bytes"]) for c in listing.json()]
        listed = len(listing.content)  # metered as a snapshots request too
        total = sum(sizes)
        clients = [SlowClient(server.port, world.key) for _ in range(CLIENTS)]
        for c in clients:
            c.read_until(READ_BEFORE_STALL)
        # The clients stop reading; the server fills the socket buffers and waits. Give it a
        # moment to get there, then kill it mid-body.
        stalled = threading.Event()
        stalled.wait(1.5)
        server.kill()
    finally:
        server.kill()
    for c in clients:
        c.drain()
        assert READ_BEFORE_STALL <= c.received < total, "the kill must cut the body"
    received = listed + sum(c.received for c in clients)

    ServerProcess(env, port=server.port).start().stop()  # replays the journal
    billed, chain_ok = _ledger(world.data_dir)
    assert chain_ok
    assert received <= billed.get("bytes", 0) <= received + CLIENTS * (max(sizes)
                                                                      + TRANSPORT_SLACK)
    # The listing is the one complete request before the kill; the three cut downloads are
    # requests too, and one download of the resource (same customer, version and day).
    assert billed["requests"] == 1 + CLIENTS
    assert billed["downloads"] == 1
