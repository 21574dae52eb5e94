"""``feedserver serve --workers N``: N uvicorn servers, each listening on a socket of its own.

uvicorn's own ``--workers`` hands ONE listening socket to every worker. Each worker's event
loop then accepts up to ``backlog`` connections per wake-up, so when many clients connect at
once (a reconnect storm of realtime subscribers) the first worker to wake takes most of them:
measured with 1,000 subscribers on 2 workers, one worker served about 80% of the streams and
was the bottleneck while the other idled (docs/realtime.md). Here every worker binds its own
socket to the same address with ``SO_REUSEPORT``, and the kernel spreads new connections over
the listening workers by a hash of the client's address and port: an even share per worker.

The parent holds the port with a bound socket that never listens (so it never receives a
connection, and a port in use fails at once, before any worker starts), starts the workers
(spawned processes, like uvicorn's), restarts a worker that dies, and on SIGINT / SIGTERM
sends each worker SIGTERM (each shuts down gracefully: streams end with their offsets) and
waits for them, killing a worker that outlives ``STOP_TIMEOUT``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

POLL_SECONDS = 0.5
STOP_TIMEOUT = 30.0

_spawn = multiprocessing.get_context("spawn")


def listener(host: str, port: int, *, listen: int | None) -> socket.socket:
    """A TCP socket on ``host:port`` with ``SO_REUSEPORT``; listening when ``listen`` (the
    backlog) is given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen is not None:
        sock.listen(listen)
    return sock


def _worker(config: uvicorn.Config) -> None:  # in the worker process
    config.configure_logging()  # as uvicorn's workers do (the parent's setup is not inherited)
    sock = listener(config.host, config.port, listen=config.backlog)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(config: uvicorn.Config, workers: int) -> int:
    """Serve ``config`` with ``workers`` processes until SIGINT / SIGTERM (0), or until a
    worker fails to start (uvicorn's exit status 3, which is returned: a broken configuration
    is not restarted in a loop)."""
    hold = listener(config.host, config.port, listen=None)
    config.port = hold.getsockname()[1]  # port 0: the one the system chose, for every worker
    stopping: list[int] = []

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        stopping.append(sig)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[BaseProcess] = []
    try:
        for _ in range(workers):
            procs.append(_start(config))
        while not stopping:
            time.sleep(POLL_SECONDS)
            for i, proc in enumerate(procs):
                if proc.is_alive() or stopping:
                    continue
                if proc.exitcode == STARTUP_FAILURE:
                    return STARTUP_FAILURE
                procs[i] = _start(config)  # a dead worker is replaced
        return 0
    finally:
        # SIGTERM, whatever the parent got (as uvicorn's supervisor does): a worker that also
        # got the terminal's SIGINT would take a second SIGINT as "exit now, not gracefully".
        _stop(procs)
        hold.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _start(config: uvicorn.Config) -> BaseProcess:
    proc = _spawn.Process(target=_worker, args=(config,))
    proc.start()
    return proc


def _stop(procs: list[BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(10)
