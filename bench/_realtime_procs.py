"""Processes of ``bench.realtime``: the server under test, the producer, the subscriber
processes, and the CPU / RSS of a process tree (Linux ``/proc``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import msgspec

from bench._cpu import process_cpu
from bench._realtime_clients import BUCKET_NS, Result
from tests.fixtures.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 10
CLIENT_PROCESSES = 4


def spread(n: int, parts: int | None = None) -> list[int]:
    """``n`` split over ``parts`` (default: ``CLIENT_PROCESSES``, fewer when n is smaller)."""
    k = parts if parts is not None else min(CLIENT_PROCESSES, n)
    return [n // k + (i < n % k) for i in range(k)]


def producer_args(target: str, topic: str, start: int, count: int, rate: float) -> list[str]:
    return [sys.executable, "-m", "bench._realtime_load", "produce", target, topic,
            str(PARTITIONS), str(start), str(count), str(rate)]


@contextlib.contextmanager
def server(env: dict[str, str], port: int, workers: int = 1) -> Iterator[tuple[str, int]]:
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "feedserver", "serve", "--port", str(port),
                                 "--workers", str(workers)],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"feedserver serve did not start: {_tail(out)}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            yield url, proc.pid
        finally:
            stop_process(proc, timeout=15)
            if keep := os.environ.get("BENCH_SERVER_LOG"):  # the server's output, to look at
                Path(keep).write_text(_tail(out, 200_000))


def _tail(out: IO[bytes], size: int = 2000) -> str:
    out.seek(0)
    return out.read().decode(errors="replace")[-size:]


class Pids(msgspec.Struct, frozen=True):
    server: int
    broker: int  # 0: none (embedded log)


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU time of process ``pid`` and its children (Linux /proc); 0 for 0."""
    total = 0.0
    if not pid:
        return total
    for one in family(pid) if children else [pid]:
        with contextlib.suppress(OSError):
            total += process_cpu(one)
    return total


def write_calls(pid: int) -> int:
    """Write-class system calls of process ``pid`` so far (``syscw`` in ``/proc/PID/io``:
    ``write``/``writev`` on its sockets), 0 when unreadable."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("syscw:"):
                return int(line.split()[1])
    return 0


def runnable_seconds(pid: int) -> float:
    """Seconds process ``pid``'s threads spent runnable but not running (waiting for a CPU:
    the second field of ``/proc/PID/task/TID/schedstat``), 0 when unreadable."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn ``--workers``: the workers)."""
    out, todo = [], [pid]
    while todo:
        one = todo.pop()
        out.append(one)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{one}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for one in family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class Clients:
    """Subscribers spread over ``CLIENT_PROCESSES`` processes of ``bench._realtime_clients``;
    ``slow`` of them (spread alike) never read."""

    def __init__(self, port: int, key: str, subscribers: int, timeout: float, *,
                 slow: int = 0) -> None:
        self.args = [str(port), key]
        self.counts = spread(subscribers)
        self.slow = spread(slow, len(self.counts))
        self.timeout = timeout
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Clients:
        for n, slow in zip(self.counts, self.slow, strict=True):
            self.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench._realtime_clients", "127.0.0.1", *self.args,
                str(n), str(self.timeout), str(slow), cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE))
        async with asyncio.timeout(90):
            for proc in self.procs:
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                if line.strip() != b"connected":
                    raise RuntimeError(f"subscribers did not connect ({line[:200]!r})")
        return self

    async def finish(self, expect: int, done: Callable[[], None] | None = None
                     ) -> list[Result]:
        """Tell every process how many records to wait for; their results. ``done`` is called
        once every process has its records and before any closes its streams (the server's
        work of ending 1,000 streams is not delivery)."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"expect {expect}\n".encode())
            await proc.stdin.drain()
        results = []
        async with asyncio.timeout(self.timeout + 60):
            for proc in self.procs:
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                if line.strip() != b"done":
                    raise RuntimeError(f"subscribers did not finish ({line[:200]!r})")
            if done is not None:
                done()
            for proc in self.procs:
                assert proc.stdin is not None
                proc.stdin.write(b"close\n")
                await proc.stdin.drain()
            for proc in self.procs:
                out, _ = await proc.communicate()
                results.append(msgspec.json.decode(out.splitlines()[-1], type=Result))
        return results

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def percentile(histogram: dict[int, int], q: float) -> float:
    """The ``q`` quantile of a 0.1 ms histogram, in ms."""
    total = sum(histogram.values())
    rank = min(total - 1, int(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return bucket * BUCKET_NS / 1e6
    return 0.0
