"""Realtime stream: end-to-end latency under fan-out, single-subscriber throughput as a ratio to
a bare aiokafka consumer measured in the same run, and the memory of idle subscribers.

Setup: a REAL Tansu broker on 127.0.0.1 (``_realtime_broker``; without it, the embedded log and
the run says so), ``feedserver serve`` in its own process per phase with an API key on a
realtime plan, a fresh article topic per phase (``phase_topics``) with ``PARTITIONS``
partitions. Every process is torn down at the end.

(a) throughput: ``THROUGHPUT_RECORDS`` articles pre-produced; the time for a bare aiokafka
    consumer (connect, assign, seek 0, getmany, no decoding) to read them all, versus one HTTP
    subscriber streaming them all from offset 0 as NDJSON over a raw socket (the server opens a
    catch-up reader, stamps ``event.partition/offset`` into each record, frames and writes it;
    the client only counts records). Best of ``REPEATS``, interleaved. Target >= 0.8x.
(b) latency: NDJSON streams from the tail (1, then ``SUBSCRIBERS``, then ``WIDE_SUBSCRIBERS``
    across ``serve --workers 2``), spread over ``CLIENT_PROCESSES`` processes of cheap
    raw-socket clients (``_realtime_clients``); a producer in its own process appends ``RATE``
    articles/s for ``SECONDS`` s, each stamped with its send time, and every client computes
    produce -> receive latency from the bytes it gets. Printed: p50 / p99 / max over every
    (record, subscriber) pair, records delivered / expected, streams ended by the server, and
    the CPU used by the server, the clients and the broker during the phase.
(c) memory: the server's RSS before and with ``IDLE_SUBSCRIBERS`` idle streams.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench._realtime_broker import TansuBroker, free_port, start_tansu
from bench._realtime_clients import BUCKET_NS, COARSE_NS, WINDOW_NS, Result
from bench._realtime_lag import FLAT_MB, LAG_RING, LAG_SLOW, lag_memory
from bench._realtime_load import bare_consume
from bench._realtime_procs import (
    PARTITIONS,
    ROOT,
    Clients,
    Pids,
    cpu_seconds,
    family,
    percentile,
    producer_args,
    rss_bytes,
    runnable_seconds,
    server,
    write_calls,
)
from bench._targets import check
from feedserver.accounts.service import Accounts
from feedserver.config import load_settings
from feedserver.plans import Plan
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog

TOPIC = "bench.articles"
SECRET = "bench-secret-0123456789abcdef0123"
THROUGHPUT_RECORDS = 20_000
WARM_RECORDS = 1_000
REPEATS = 2
SUBSCRIBERS = 200
WIDE_SUBSCRIBERS = 1000  # across serve --workers 2
IDLE_SUBSCRIBERS = 1000
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


async def create_topic(target: str, db_path: Path, topic: str) -> None:
    kind, _, where = target.partition(":")
    if kind == "kafka":
        from feedserver.storage.eventlog.kafka import KafkaEventLog

        kafka = KafkaEventLog(where)
        try:
            await kafka.create_topic(topic, PARTITIONS)
        finally:
            await kafka.close()
    else:
        await EmbeddedEventLog(SQLiteDatabase(db_path)).create_topic(topic, PARTITIONS)


async def warm_up(port: int, key: str) -> None:
    """A short catch-up stream first (offset 0, ``WARM_RECORDS`` records, then closed): the
    server process opens its hub and pays its first request's and first catch-up reader's
    one-off costs here, not in the first timed run (which took three times the second when
    it paid them). The bare consumer needs no such step: it runs in this process, whose
    imports and first consumer are behind it."""
    await http_stream_seconds(port, key, WARM_RECORDS)


async def http_stream_seconds(port: int, key: str, count: int) -> float:
    """One NDJSON stream from offset 0 over a raw socket; the client only counts records."""
    body = json.dumps({"offsets": {str(p): 0 for p in range(PARTITIONS)}}).encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST /v2/articles HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {key}\r\nAccept: application/x-ndjson\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     f"\r\n".encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"subscribe: {head[:200]!r}")
        got = 0
        rest = b""
        async with asyncio.timeout(120):
            while got < count:
                chunk = await reader.read(256 * 1024)
                if not chunk:
                    break
                data = rest + chunk  # a read may end inside a record: count whole lines
                cut = data.rfind(b"\n") + 1
                got += data.count(b'"bench_sent_ns"', 0, cut)
                rest = data[cut:]
        elapsed = time.perf_counter() - start
    finally:
        writer.close()
    if got < count:
        raise RuntimeError(f"HTTP subscriber got {got} of {count} records")
    return elapsed


def throughput(port: int, key: str, target: str, topic: str, pids: Pids) -> float:
    """Best of ``REPEATS`` (interleaved); prints the CPU each side used per run: the bare
    consumer's own, and the server's, the HTTP client's and the broker's."""
    bare, ours = [], []
    bare_cpu, server_cpu, client_cpu, broker_cpu = [], [], [], []
    asyncio.run(warm_up(port, key))
    for _ in range(REPEATS):
        cpu, broker = time.process_time(), cpu_seconds(pids.broker)
        bare.append(asyncio.run(bare_consume(target, topic, PARTITIONS, THROUGHPUT_RECORDS,
                                             timeout=120)))
        bare_cpu.append(time.process_time() - cpu)
        broker_cpu.append(cpu_seconds(pids.broker) - broker)
        cpu, server_at, broker = time.process_time(), cpu_seconds(pids.server), cpu_seconds(
            pids.broker)
        ours.append(asyncio.run(http_stream_seconds(port, key, THROUGHPUT_RECORDS)))
        client_cpu.append(time.process_time() - cpu)
        server_cpu.append(cpu_seconds(pids.server) - server_at)
        broker_cpu.append(cpu_seconds(pids.broker) - broker)
    bare_rate, our_rate = THROUGHPUT_RECORDS / min(bare), THROUGHPUT_RECORDS / min(ours)
    ratio = our_rate / bare_rate
    print(f"throughput, {THROUGHPUT_RECORDS} records from offset 0: bare consumer "
          f"{bare_rate:,.0f} rec/s, one HTTP NDJSON subscriber {our_rate:,.0f} rec/s, ratio "
          f"{ratio:.2f}x (target >= 0.8x)", flush=True)
    print(f"  per run: bare consumer {_runs(bare)} s using {_runs(bare_cpu)} CPU-s, broker "
          f"{_runs(broker_cpu[0::2])}; HTTP {_runs(ours)} s: server {_runs(server_cpu)} CPU-s, "
          f"client {_runs(client_cpu)}, broker {_runs(broker_cpu[1::2])}; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    return ratio


def _runs(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


async def latency(port: int, key: str, target: str, topic: str, pids: Pids, *,
                  subscribers: int, label: str) -> tuple[float, float, bool]:
    """(p50 ms, p99 ms, everything delivered and nobody cut)."""
    async with Clients(port, key, subscribers, DRAIN_TIMEOUT) as clients:
        server_cpu, broker_cpu = cpu_seconds(pids.server), cpu_seconds(pids.broker)
        workers = {one: cpu_seconds(one, children=False) for one in family(pids.server)}
        writes = sum(write_calls(one) for one in workers)
        queued = {one: runnable_seconds(one) for one in workers}
        wall = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *producer_args(target, topic, 0, RATE * SECONDS, RATE),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 3 * SECONDS + 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        produced = json.loads(out)
        sent = int(produced["sent"])
        delivered_at: dict[int, float] = {}

        def done() -> None:  # every record delivered, no stream closed yet
            delivered_at.update({one: cpu_seconds(one, children=False) for one in workers})
            delivered_at[0] = cpu_seconds(pids.server)
            delivered_at[-1] = sum(write_calls(one) for one in workers)
            queued.update({one: runnable_seconds(one) - at for one, at in queued.items()})

        results = await clients.finish(sent, done)
        server_cpu = delivered_at[0] - server_cpu
        writes = int(delivered_at[-1]) - writes
        workers = {one: delivered_at[one] - cpu for one, cpu in workers.items()}
        broker_cpu = cpu_seconds(pids.broker) - broker_cpu
        wall = time.monotonic() - wall
    histogram: dict[int, int] = {}
    for r in results:
        for bucket, n in r.histogram.items():
            histogram[bucket] = histogram.get(bucket, 0) + n
    got = sum(sum(r.received) for r in results)
    cut = sum(r.closed for r in results)
    errors = sum(len(r.errors) for r in results)
    client_cpu = sum(r.cpu_seconds for r in results)
    if not histogram:
        raise RuntimeError("no record reached a subscriber")
    p50, p99 = percentile(histogram, 0.5), percentile(histogram, 0.99)
    print(f"latency, {label}, {sent} records at {sent / produced['seconds']:,.0f}/s "
          f"(target {RATE}/s): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(histogram) * BUCKET_NS / 1e6:.1f} ms; delivered {got:,} of "
          f"{sent * subscribers:,}; cut {cut}, errors {errors}", flush=True)
    print(f"  CPU over the {wall:.1f} s phase: server {server_cpu:.1f} s (until the last record "
          f"was in, before the streams ended), subscribers "
          f"{client_cpu:.1f} s in {len(results)} process(es) "
          f"({client_cpu / max(got, 1) * 1e6:.2f} s per million records), "
          f"broker {broker_cpu:.1f} s; load average {os.getloadavg()[0]:.1f}", flush=True)
    producer_cpu = float(produced.get("cpu_seconds", 0.0))
    per_million = 1e6 / max(got, 1)
    print(f"  budget per million deliveries: server {server_cpu * per_million:.2f} CPU-s "
          f"(per process: {' / '.join(f'{v:.1f}' for v in workers.values())} s), subscribers "
          f"{client_cpu * per_million:.2f}, broker {broker_cpu * per_million:.2f}, producer "
          f"{producer_cpu * per_million:.2f} ({producer_cpu:.1f} s); total "
          f"{(server_cpu + client_cpu + broker_cpu + producer_cpu) * per_million:.2f}",
          flush=True)
    reads = sum(r.reads for r in results)
    print(f"  server socket writes {writes:,} ({got / max(writes, 1):.1f} deliveries each), "
          f"subscriber reads with records {reads:,} ({got / max(reads, 1):.1f} each)",
          flush=True)
    print(f"  waiting for a CPU (runnable, not running) in the phase: server processes "
          f"{' / '.join(f'{v:.1f}' for v in queued.values())} s, subscriber processes "
          f"{' / '.join(f'{r.waited_seconds:.1f}' for r in results)} s", flush=True)
    each = " / ".join(f"{percentile(r.histogram, 0.99) / 1000:.2f}" for r in results)
    print(f"  p99 by send time (per {WINDOW_NS / 1e9:g} s): {timeline(results)}; p99 per "
          f"subscriber process: {each} s", flush=True)
    return p50, p99, got == sent * subscribers and cut == 0 and errors == 0


def timeline(results: list[Result]) -> str:
    """p99 per send-time window, in s: growing = a backlog (capacity), spikes = stalls."""
    windows: dict[int, dict[int, int]] = {}
    for r in results:
        for w, buckets in r.timeline.items():
            merged = windows.setdefault(w, {})
            for b, n in buckets.items():
                merged[b] = merged.get(b, 0) + n
    scale = COARSE_NS / BUCKET_NS  # percentile() reads 0.1 ms buckets
    return " ".join(
        f"{percentile({int(b * scale): n for b, n in windows[w].items()}, 0.99) / 1000:.2f}"
        for w in sorted(windows))


async def idle_memory(port: int, key: str, server_pid: int) -> float:
    """MB the server's RSS grows by with ``IDLE_SUBSCRIBERS`` idle streams."""
    before = rss_bytes(server_pid)
    async with Clients(port, key, IDLE_SUBSCRIBERS, 5.0) as clients:
        await asyncio.sleep(1.0)  # every stream has its slot and subscription
        after = rss_bytes(server_pid)
        await clients.finish(0)
    grown = (after - before) / 2**20
    print(f"memory: server RSS {before / 2**20:.0f} MB -> {after / 2**20:.0f} MB with "
          f"{IDLE_SUBSCRIBERS} idle subscribers, +{grown:.1f} MB (target < 50 MB)", flush=True)
    return grown


def phase_topics(target: str, db_path: Path) -> dict[str, str]:
    """A fresh article topic per phase: Tansu's in-memory engine gets slower per fetch as a
    topic holds more batches (see docs/realtime.md), which would charge the records of one
    phase to the next one's latency."""
    topics = {name: f"{TOPIC}.{name}" for name in PHASES}
    for topic in topics.values():
        asyncio.run(create_topic(target, db_path, topic))
    return topics


PHASES = ("throughput", "one", "lag", "fan", "wide")
PHASES_ENV = "BENCH_REALTIME_PHASES"  # e.g. "wide,lag": only those phases (A/B runs)


def passed(name: str, ok: bool) -> None:
    check(name, 1.0 if ok else 0.0, 1.0, unit="ok")


def run() -> None:
    phases = [p for p in os.environ.get(PHASES_ENV, ",".join(PHASES)).split(",") if p]
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        data_dir = Path(tmp)
        db_path = data_dir / "feedserver.db"
        key = prepare(data_dir)
        broker: TansuBroker | None = start_tansu()
        try:
            if broker is None:
                target = f"embedded:{db_path}"
                print("Tansu not available: embedded event log (SQLite, polled by the server "
                      "every 0.05 s), not Kafka", flush=True)
            else:
                target = f"kafka:{broker.bootstrap}"
                print(f"Tansu broker on {broker.bootstrap}", flush=True)
            topics = phase_topics(target, db_path)
            if "throughput" in phases:
                produced = subprocess.run(
                    producer_args(target, topics["throughput"], 0, THROUGHPUT_RECORDS, 0),
                    cwd=ROOT, check=True, capture_output=True, timeout=120)
                stats = json.loads(produced.stdout)
                print(f"pre-produced {stats['sent']} records at "
                      f"{stats['sent'] / stats['seconds']:,.0f}/s", flush=True)
            env = {**os.environ, "PYTHONPATH": str(ROOT), "FEEDSERVER_DATA_DIR": str(data_dir),
                   "FEEDSERVER_TOKEN_SECRET": SECRET, "FEEDSERVER_LOG_LEVEL": "WARNING",
                   "FEEDSERVER_ARTICLE_PARTITIONS": str(PARTITIONS)}
            if broker is not None:
                env["FEEDSERVER_KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
            broker_pid = (broker.pid or 0) if broker is not None else 0

            def on(topic: str) -> dict[str, str]:
                return {**env, "FEEDSERVER_ARTICLE_TOPIC": topics[topic]}

            if "throughput" in phases:
                port = free_port()
                with server(on("throughput"), port) as (_url, pid):
                    ratio = throughput(port, key, target, topics["throughput"],
                                       Pids(pid, broker_pid))
                check("realtime: one subscriber from offset 0 vs a bare aiokafka consumer",
                      ratio, 0.8)
            if "one" in phases:
                port = free_port()
                with server(on("one"), port) as (_url, pid):
                    # One subscriber first: the pipeline's own latency, the reference for the
                    # fan-out figure; then the memory of idle subscribers on the same server.
                    p50, p99, ok = asyncio.run(latency(
                        port, key, target, topics["one"], Pids(pid, broker_pid),
                        subscribers=1, label="1 subscriber"))
                    passed(f"realtime: 1 subscriber p50 {p50:.0f} ms < 50, p99 {p99:.0f} ms "
                           "< 100, all delivered", p50 < 50 and p99 < 100 and ok)
                    grown = asyncio.run(idle_memory(port, key, pid))
                    passed(f"realtime: RSS +{grown:.1f} MB < 50 MB for {IDLE_SUBSCRIBERS} idle "
                           "subscribers", grown < 50)
            if "lag" in phases:
                port = free_port()
                lag_env = {**on("lag"), "FEEDSERVER_REALTIME_MAX_SUBSCRIBER_LAG": str(LAG_RING)}
                with server(lag_env, port) as (_url, pid):
                    lagged = asyncio.run(lag_memory(port, key, target, topics["lag"], pid))
                passed(f"realtime: RSS flat while {LAG_SLOW} slow subscribers lag "
                       f"(+{lagged.growth_after_full:.1f} MB after the ring filled < "
                       f"{FLAT_MB:g} MB), live ones all delivered",
                       lagged.growth_after_full < FLAT_MB
                       and lagged.delivered == lagged.expected)
            if "fan" in phases:
                port = free_port()
                with server(on("fan"), port) as (_url, pid):
                    p50, p99, ok = asyncio.run(latency(
                        port, key, target, topics["fan"], Pids(pid, broker_pid),
                        subscribers=SUBSCRIBERS, label=f"{SUBSCRIBERS} subscribers"))
                passed(f"realtime: {SUBSCRIBERS} subscribers p99 {p99:.0f} ms < 250, 100% "
                       "delivered, 0 cut", p99 < 250 and ok)
            if "wide" in phases:
                port = free_port()
                with server(on("wide"), port, workers=2) as (_url, pid):
                    p50, p99, ok = asyncio.run(latency(
                        port, key, target, topics["wide"], Pids(pid, broker_pid),
                        subscribers=WIDE_SUBSCRIBERS,
                        label=f"{WIDE_SUBSCRIBERS} subscribers, serve --workers 2"))
                passed(f"realtime: {WIDE_SUBSCRIBERS} subscribers on 2 workers p99 "
                       f"{p99 / 1000:.1f} s < 1 s, all delivered", p99 < 1000 and ok)
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    run()
