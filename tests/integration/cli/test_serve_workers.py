"""``feedserver serve --workers 2``: each worker listens on a socket of its own
(``SO_REUSEPORT``), so connections arriving at once are spread over the workers.

With uvicorn's single shared socket the first worker to wake accepted up to ``backlog``
connections at once: 1,000 realtime subscribers connecting together went about 80% to one
worker, which then did most of the fan-out alone (docs/realtime.md). The kernel now hashes
each connection to one worker's socket; with ``CONNECTIONS`` connections the chance that a
worker gets fewer than a quarter of them is negligible (binomial, p = 1/2), so the bound below
does not depend on timing.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from feedserver.cli.workers import listener
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

CONNECTIONS = 64
SETTLE_TIMEOUT = 30.0


def _worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    # multiprocessing's spawn context also starts its resource tracker: not a worker.
    return [int(c) for c in children
            if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def _server_ends(port: int, client_ports: set[int]) -> set[str]:
    """The socket inodes of the server's ends of our connections (``/proc/net/tcp``: local
    port ``port``, remote port one of ``client_ports``), as ``socket:[inode]`` links."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) in client_ports:
            out.add(f"socket:[{inode}]")
    return out


def _held_by(pid: int, ends: set[str]) -> int:
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held += str(fd.readlink()) in ends
        except OSError:
            continue  # closed meanwhile
    return held


def test_connections_spread_over_the_workers(tmp_path: Path) -> None:
    server = ServerProcess(server_env(tmp_path), workers=2).start()
    try:
        assert server.proc is not None
        workers = _worker_pids(server.proc.pid)
        assert len(workers) == 2
        conns = [socket.create_connection(("127.0.0.1", server.port), timeout=10)
                 for _ in range(CONNECTIONS)]
        client_ports = {c.getsockname()[1] for c in conns}
        try:
            # Accepting is asynchronous: wait (bounded) until every connection is held.
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while True:
                ends = _server_ends(server.port, client_ports)
                held = {pid: _held_by(pid, ends) for pid in workers}
                if sum(held.values()) >= CONNECTIONS or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert sum(held.values()) >= CONNECTIONS, held
            assert min(held.values()) >= CONNECTIONS // 4, held
        finally:
            for c in conns:
                c.close()
    finally:
        server.stop()


def test_a_held_port_gets_no_connections_until_a_worker_listens() -> None:
    # The master holds the port with a socket that never listens: a connection must not be
    # queued on it (nobody would accept it), and a worker's socket can share the port.
    hold = listener("127.0.0.1", 0, listen=None)
    port = hold.getsockname()[1]
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        worker = listener("127.0.0.1", port, listen=16)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                conn, _ = worker.accept()
                conn.close()
        finally:
            worker.close()
    finally:
        hold.close()
