"""Cheap NDJSON subscribers for ``bench.realtime``, run in processes of their own.

``python -m bench._realtime_clients HOST PORT KEY COUNT TIMEOUT`` opens COUNT streams of
``/v2/articles`` over raw sockets (one HTTP/1.1 request each, no HTTP library on the read
path), prints ``connected`` once all answered 200, then reads. The parent writes one line
``expect N`` on stdin once the producer is done (N records each stream should get; ``expect 0``
for idle streams); the process stops when every stream has N records, was closed by the
server, or TIMEOUT seconds passed since ``expect``, and prints one JSON line (``Result``).

Per read, the only parsing is a regex for ``"bench_sent_ns":<digits>`` (the producer's send
time, the last field of each record) over the complete lines: chunked-encoding framing sits
between the server's writes, which hold whole lines, so it never splits a stamp. The stamps
are kept as integers with the time of their read; only after the run they become a histogram
of 0.1 ms latency buckets (so the clients spend little CPU while the server is measured, and
1,000 streams x 5,000 records stay small to report).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from array import array

import msgspec

SENT = re.compile(rb'"bench_sent_ns":(\d+)')
CLOSED = b"stream-closed"
READ_BYTES = 256 * 1024
BUCKET_NS = 100_000  # 0.1 ms
CONNECT_TIMEOUT = 60.0


class Result(msgspec.Struct):
    received: list[int]
    closed: int
    errors: list[str]
    cpu_seconds: float
    histogram: dict[int, int]  # bucket (0.1 ms) -> samples


class Stream:
    def __init__(self) -> None:
        self.received = 0
        self.closed = False
        self.error: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None


async def connect(stream: Stream, host: str, port: int, key: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    stream.reader, stream.writer = reader, writer
    writer.write(f"POST /v2/articles HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 f"Authorization: Bearer {key}\r\nAccept: application/x-ndjson\r\n"
                 "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"subscribe: {head[:200]!r}")


async def read(stream: Stream, stamps: Stamps, done: asyncio.Event, expect: list[int]) -> None:
    reader = stream.reader
    assert reader is not None
    rest = b""
    try:
        while True:
            chunk = await reader.read(READ_BYTES)
            now = time.time_ns()
            if not chunk:
                stream.closed = True
                return
            data = rest + chunk if rest else chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            found = SENT.findall(data, 0, cut)
            if found:
                stream.received += len(found)
                stamps.add(now, found)
            if CLOSED in data:
                stream.closed = True
                return
            if expect and stream.received >= expect[0]:
                done.set()
    except (OSError, asyncio.IncompleteReadError) as exc:
        stream.error = repr(exc)


class Stamps:
    """Send stamps as they arrive, grouped by read; turned into latencies only after the run,
    so that the measuring costs the clients little CPU while the server is measured."""

    def __init__(self) -> None:
        self.sent = array("q")
        self.reads = array("q")  # (received ns, count) pairs

    def add(self, now: int, found: list[bytes]) -> None:
        self.sent.extend(map(int, found))
        self.reads.append(now)
        self.reads.append(len(found))

    def histogram(self) -> dict[int, int]:
        out: dict[int, int] = {}
        at = 0
        for i in range(0, len(self.reads), 2):
            now, count = self.reads[i], self.reads[i + 1]
            for sent in self.sent[at:at + count]:
                bucket = (now - sent) // BUCKET_NS
                out[bucket] = out.get(bucket, 0) + 1
            at += count
        return out


async def main(host: str, port: int, key: str, count: int, timeout: float) -> Result:
    cpu0 = time.process_time()
    streams = [Stream() for _ in range(count)]
    async with asyncio.timeout(CONNECT_TIMEOUT):
        await asyncio.gather(*(connect(s, host, port, key) for s in streams))
    print("connected", flush=True)
    stamps = Stamps()
    expect: list[int] = []
    done = asyncio.Event()
    tasks = [asyncio.create_task(read(s, stamps, done, expect)) for s in streams]
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    expect.append(int(line.split()[1]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.received >= expect[0] or s.closed or s.error for s in streams):
            break
        done.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in streams:
        if s.writer is not None:
            s.writer.close()
    cpu = time.process_time() - cpu0  # the run's; building the histogram is after it
    return Result(received=[s.received for s in streams], closed=sum(s.closed for s in streams),
                  errors=[s.error for s in streams if s.error], cpu_seconds=cpu,
                  histogram=stamps.histogram())


if __name__ == "__main__":
    host, port, key, count, timeout = sys.argv[1:6]
    result = asyncio.run(main(host, int(port), key, int(count), float(timeout)))
    sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
    sys.stdout.flush()
