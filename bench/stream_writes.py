"""Server CPU per GB of a streamed (chunked) response body: the realtime write path.

The server is uvicorn with feedserver's protocol class (``ZeroCopyH11Protocol``: streamed
pieces written unjoined, see ``feedserver.api.body_writes``) versus uvicorn's own h11 protocol
(``h11.Connection.send`` joins every chunk's framing and data), measured in the same run. A
minimal ASGI app streams ``WRITES`` pieces of ``PIECE`` bytes (a realtime tick is about
60 KB) on each of ``STREAMS`` connections; a raw-socket client in this process reads them with
``recv_into`` one buffer and checks the byte count. Reported: the server process's CPU
seconds (user / system) per GB, best of ``REPEATS``, runs interleaved. No target: the figure
is the write path's cost, which the realtime fan-out's capacity at 1,000 subscribers is made of.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

from bench._cpu import process_times
from bench._realtime_procs import family
from tests.fixtures.processes import stop_process

STREAMS = 20
WRITES = 3_000
PIECE = 60_000
REPEATS = 3
START_TIMEOUT = 20.0
READ_TIMEOUT = 60.0


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    piece = b"x" * (PIECE - 1) + b"\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/x-ndjson")]})
    for _ in range(WRITES):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def serve(port: int, protocol: str) -> None:
    import uvicorn

    from feedserver.api.zerocopy_server import ZeroCopyH11Protocol

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                http=ZeroCopyH11Protocol if protocol == "feedserver" else "h11")


def cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its children."""
    user = system = 0.0
    for one in family(pid):
        one_user, one_system = process_times(one)
        user += one_user
        system += one_system
    return user, system


def one_run(protocol: str) -> tuple[float, float]:
    """(user, system) server CPU seconds per GB for one run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "bench.stream_writes", "serve", str(port),
                             protocol])
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(STREAMS)]
        before = cpu(proc.pid)
        total = read_all(socks)
        after = cpu(proc.pid)
        if total < STREAMS * WRITES * PIECE:
            raise RuntimeError(f"short read: {total} bytes")
        gb = total / 1e9
        return (after[0] - before[0]) / gb, (after[1] - before[1]) / gb
    finally:
        stop_process(proc, timeout=15)


def read_all(socks: list[socket.socket]) -> int:
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    buf = memoryview(bytearray(1 << 20))
    total, open_ = 0, len(socks)
    deadline = time.monotonic() + READ_TIMEOUT
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            n = sock.recv_into(buf)
            if not n:
                sel.unregister(sock)
                sock.close()
                open_ -= 1
            total += n
    for key in list(sel.get_map().values()):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        sock.close()
    return total


def run() -> None:
    best: dict[str, tuple[float, float]] = {}
    for _ in range(REPEATS):
        for protocol in ("uvicorn-h11", "feedserver"):
            user, system = one_run(protocol)
            old = best.get(protocol)
            if old is None or user + system < sum(old):
                best[protocol] = (user, system)
    for protocol, (user, system) in best.items():
        print(f"streamed body, {STREAMS} streams x {WRITES} writes of {PIECE // 1000} KB, "
              f"{protocol}: server {user + system:.3f} CPU-s per GB (user {user:.3f}, "
              f"system {system:.3f})", flush=True)
    ratio = sum(best["feedserver"]) / sum(best["uvicorn-h11"])
    print(f"  feedserver / uvicorn h11: {ratio:.2f}x the CPU per GB; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        run()
