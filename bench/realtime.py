"""Realtime stream: end-to-end latency under fan-out, and single-subscriber throughput as a ratio
to a bare aiokafka consumer measured in the same run.

Setup: a REAL Tansu broker on 127.0.0.1 (``_realtime_broker``; without it, the embedded log and
the run says so), ``feedserver serve`` in its own process with an API key on a realtime plan,
the article topic with ``PARTITIONS`` partitions. Every process is torn down at the end.

(a) throughput: ``THROUGHPUT_RECORDS`` articles pre-produced; the time for a bare aiokafka
    consumer (assign + seek 0 + getmany, no decoding) to read them all, versus one HTTP
    subscriber streaming them all from offset 0 as NDJSON (the server decodes each record's
    routing fields, stamps ``event.partition/offset`` into its bytes, frames it and writes it
    to the socket; the client only counts lines). Best of ``REPEATS``, interleaved. Target >= 0.5x.
(b) latency: one NDJSON stream alone (the pipeline's own latency), then ``SUBSCRIBERS``
    streams, from the tail; for each, a producer in its own process appends ``RATE``
    articles/s for ``SECONDS`` s, each stamped with its send time, and every subscriber computes
    produce -> receive latency from the bytes it gets. Printed: p50 / p99 / max over every
    (record, subscriber) pair, records delivered / expected, subscribers the server cut for
    lag, and the CPU the server and the subscribers' process used. Broker, server, producer
    and the 200 clients share the machine's cores (the subscribers' process alone uses more CPU
    than the server), so the fan-out figure is an upper bound of what the server adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from bench._realtime_broker import TansuBroker, free_port, start_tansu
from bench._realtime_load import Subscriber, bare_consume
from feedserver.accounts.service import Accounts
from feedserver.config import load_settings
from feedserver.plans import Plan
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "bench.articles"
PARTITIONS = 10
SECRET = "bench-secret-0123456789abcdef0123"
THROUGHPUT_RECORDS = 20_000
REPEATS = 2
SUBSCRIBERS = 200
RATE = 1000
SECONDS = 5
DRAIN_TIMEOUT = 20.0


def prepare(data_dir: Path) -> str:
    settings = load_settings(env={}, data_dir=str(data_dir), token_secret=SECRET)
    db = SQLiteDatabase(data_dir / "feedserver.db")
    try:
        accounts = Accounts(db, settings)
        accounts.create_plan(Plan(name="bench", feeds=["realtime"]))
        accounts.create_customer("bench", "bench")
        return accounts.create_api_key("bench")[1]
    finally:
        db.close()


async def create_topic(target: str, db_path: Path) -> None:
    kind, _, where = target.partition(":")
    if kind == "kafka":
        from feedserver.storage.eventlog.kafka import KafkaEventLog

        kafka = KafkaEventLog(where)
        try:
            await kafka.create_topic(TOPIC, PARTITIONS)
        finally:
            await kafka.close()
    else:
        await EmbeddedEventLog(SQLiteDatabase(db_path)).create_topic(TOPIC, PARTITIONS)


def producer_args(target: str, start: int, count: int, rate: float) -> list[str]:
    return [sys.executable, "-m", "bench._realtime_load", "produce", target, TOPIC,
            str(PARTITIONS), str(start), str(count), str(rate)]


@contextlib.contextmanager
def server(env: dict[str, str], port: int) -> Iterator[tuple[str, int]]:
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "feedserver", "serve", "--port", str(port)],
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
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _tail(out: IO[bytes]) -> str:
    out.seek(0)
    return out.read().decode(errors="replace")[-2000:]


async def http_stream_seconds(url: str, key: str, count: int) -> float:
    sub = Subscriber(url, key, {"offsets": {str(p): 0 for p in range(PARTITIONS)}})
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client:
        start = time.perf_counter()
        await sub.run(client, until=count, timeout=120, measure=False)
        elapsed = time.perf_counter() - start
    if sub.received < count:
        raise RuntimeError(f"HTTP subscriber got {sub.received} of {count} records")
    return elapsed


def throughput(url: str, key: str, target: str, db_path: Path) -> None:
    bare, ours = [], []
    for _ in range(REPEATS):
        bare.append(asyncio.run(bare_consume(target, TOPIC, PARTITIONS, THROUGHPUT_RECORDS,
                                             timeout=120)))
        ours.append(asyncio.run(http_stream_seconds(url, key, THROUGHPUT_RECORDS)))
    bare_rate, our_rate = THROUGHPUT_RECORDS / min(bare), THROUGHPUT_RECORDS / min(ours)
    print(f"throughput, {THROUGHPUT_RECORDS} records from offset 0: bare consumer "
          f"{bare_rate:,.0f} rec/s, one HTTP NDJSON subscriber {our_rate:,.0f} rec/s, ratio "
          f"{our_rate / bare_rate:.2f}x (target >= 0.5x)", flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def latency(url: str, key: str, target: str, server_pid: int, *, subscribers: int,
                  start: int) -> None:
    server_cpu, own_cpu, wall = cpu_seconds(server_pid), time.process_time(), time.monotonic()
    subs = [Subscriber(url, key, {}) for _ in range(subscribers)]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)) as client:
        total = SECONDS + 30 + DRAIN_TIMEOUT
        tasks = [asyncio.create_task(s.run(client, until=10**12, timeout=total)) for s in subs]
        try:
            async with asyncio.timeout(30):
                for sub, task in zip(subs, tasks, strict=True):
                    waiter = asyncio.ensure_future(sub.connected.wait())
                    await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if task.done():
                        task.result()  # raises what went wrong
            proc = await asyncio.create_subprocess_exec(
                *producer_args(target, start, RATE * SECONDS, RATE),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 3 * SECONDS + 30)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            produced = json.loads(out)
            sent = int(produced["sent"])
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while time.monotonic() < deadline and not all(
                    s.received >= sent or s.closed or t.done() for s, t in zip(subs, tasks,
                                                                                strict=True)):
                await asyncio.sleep(0.1)
            server_cpu = cpu_seconds(server_pid) - server_cpu
            own_cpu = time.process_time() - own_cpu
            wall = time.monotonic() - wall
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)
              and not isinstance(r, asyncio.CancelledError)]
    samples = sorted(x for s in subs for x in s.latencies)
    got = sum(s.received for s in subs)
    if not samples:
        raise RuntimeError(f"no record reached a subscriber ({errors[:1]})")

    def pct(q: float) -> float:
        return samples[min(len(samples) - 1, int(q * len(samples)))] / 1e6

    print(f"latency, {subscribers} subscriber(s), {sent} records at "
          f"{sent / produced['seconds']:,.0f}/s (target {RATE}/s): p50 {pct(0.5):.1f} ms, "
          f"p99 {pct(0.99):.1f} ms, max {samples[-1] / 1e6:.1f} ms; delivered {got:,} of "
          f"{sent * subscribers:,}; cut {sum(s.closed for s in subs)}, "
          f"errors {len(errors)}", flush=True)
    print(f"  CPU over the {wall:.1f} s phase: server {server_cpu:.1f} s, the subscribers' "
          f"process {own_cpu:.1f} s (2 cores shared with broker and producer)", flush=True)


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        data_dir = Path(tmp)
        db_path = data_dir / "feedserver.db"
        key = prepare(data_dir)
        broker: TansuBroker | None = start_tansu()
        try:
            if broker is None:
                target = f"embedded:{db_path}"
                print("Tansu not available: embedded event log (SQLite, polled by the server "
                      "every 0.2 s), not Kafka", flush=True)
            else:
                target = f"kafka:{broker.bootstrap}"
                print(f"Tansu broker on {broker.bootstrap}", flush=True)
            asyncio.run(create_topic(target, db_path))
            produced = subprocess.run(producer_args(target, 0, THROUGHPUT_RECORDS, 0), cwd=ROOT,
                                      check=True, capture_output=True, timeout=120)
            stats = json.loads(produced.stdout)
            print(f"pre-produced {stats['sent']} records at "
                  f"{stats['sent'] / stats['seconds']:,.0f}/s", flush=True)
            env = {**os.environ, "PYTHONPATH": str(ROOT), "FEEDSERVER_DATA_DIR": str(data_dir),
                   "FEEDSERVER_TOKEN_SECRET": SECRET, "FEEDSERVER_LOG_LEVEL": "WARNING",
                   "FEEDSERVER_ARTICLE_TOPIC": TOPIC,
                   "FEEDSERVER_ARTICLE_PARTITIONS": str(PARTITIONS)}
            if broker is not None:
                env["FEEDSERVER_KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
            with server(env, free_port()) as (url, pid):
                throughput(url, key, target, db_path)
                # One subscriber first: the pipeline's own latency, the reference for the
                # fan-out figure.
                for i, count in enumerate((1, SUBSCRIBERS)):
                    asyncio.run(latency(url, key, target, pid, subscribers=count,
                                        start=THROUGHPUT_RECORDS + i * RATE * SECONDS))
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    run()
