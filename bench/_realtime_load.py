"""Load for ``bench.realtime``: article records, producers and the bare-consumer baseline (the
subscribers are ``bench._realtime_clients``).

Records are Article JSON built from the real page_change sample (about 1 KB each), renamed per
index, with one extra top-level field ``bench_sent_ns`` (wall clock, ns) stamped just before
the record is handed to the log (the record's last field); the hub passes unknown fields
through, so a subscriber computes produce -> receive latency from the bytes it gets.

Tansu advances a partition's high watermark by one per produced batch, so the Kafka producer
sends one record per request per partition (a sequential sender per partition, partitions in
parallel) -- the way ``KafkaEventLog`` does.

``python -m bench._realtime_load produce TARGET TOPIC PARTITIONS START COUNT RATE`` runs the
producer in its own process (so the subscribers' CPU does not delay it) and prints one JSON
line ``{"sent": n, "seconds": s, "cpu_seconds": c}`` (c: the producer's own CPU).
TARGET is ``kafka:HOST:PORT`` or ``embedded:DB_PATH``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from feedserver.ingest.events import changes_from_json

ROOT = Path(__file__).resolve().parents[1]
EVENTS = (ROOT.parent / "shared/data/events/page_change"
          / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl")
_ENCODER = msgspec.json.Encoder()


def templates() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in EVENTS.read_bytes().splitlines():
        if line.strip():
            out.extend(msgspec.json.decode(_ENCODER.encode(c.article))
                       for c in changes_from_json(line))
    return out


class Records:
    """Record ``i``: a real article renamed ``Bench_{i}``; ``value(i)`` stamps the send time."""

    def __init__(self) -> None:
        self.base = templates()

    def value(self, i: int) -> bytes:
        article = dict(self.base[i % len(self.base)])
        article["name"] = f"Bench_{i}"
        article["identifier"] = 90_000_000 + i
        article["event"] = {**article.get("event", {}), "identifier": f"bench-{i}"}
        article["bench_sent_ns"] = time.time_ns()
        return _ENCODER.encode(article)


Send = Callable[[int, int], Awaitable[None]]  # (partition, index)


async def _paced(send: Send, partitions: int, start: int, count: int, rate: float) -> int:
    """Hand records to per-partition senders: all at once (rate 0) or ``rate`` per second."""
    queues: list[asyncio.Queue[int | None]] = [asyncio.Queue() for _ in range(partitions)]
    sent = 0

    # Paced: give up handing out records at twice the planned time (an overloaded machine),
    # so the run stays bounded; the caller sees the rate actually achieved.
    stop_at = time.monotonic() + (2 * count / rate + 5 if rate > 0 else 600)

    async def sender(p: int) -> None:
        nonlocal sent
        while (i := await queues[p].get()) is not None:
            if time.monotonic() < stop_at:
                await send(p, i)
                sent += 1

    workers = [asyncio.create_task(sender(p)) for p in range(partitions)]
    t0 = time.monotonic()
    queued = 0
    while queued < count and time.monotonic() < stop_at:
        due = count if rate <= 0 else min(count, int((time.monotonic() - t0) * rate) + 1)
        for i in range(start + queued, start + due):
            queues[i % partitions].put_nowait(i)
        queued = due
        if queued < count:
            await asyncio.sleep(0.005)
    for q in queues:
        q.put_nowait(None)
    await asyncio.gather(*workers)
    return sent


async def produce(target: str, topic: str, partitions: int, start: int, count: int,
                  rate: float) -> int:
    records = Records()
    kind, _, where = target.partition(":")
    if kind == "kafka":
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=where, acks="all", linger_ms=0)
        await producer.start()
        try:
            async def send(p: int, i: int) -> None:
                await producer.send_and_wait(topic, records.value(i), partition=p)

            return await _paced(send, partitions, start, count, rate)
        finally:
            await producer.stop()
    from feedserver.storage.db import SQLiteDatabase
    from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing

    log = EmbeddedEventLog(SQLiteDatabase(Path(where)))
    try:
        async def append(p: int, i: int) -> None:
            await log.append(topic, [Outgoing(key=None, value=records.value(i), partition=p)])

        return await _paced(append, partitions, start, count, rate)
    finally:
        await log.close()


async def bare_consume(target: str, topic: str, partitions: int, count: int,
                       timeout: float) -> float:
    """Seconds for a fresh bare consumer (connect, assign, seek 0, getmany; no decoding) to
    read ``count`` records."""
    kind, _, where = target.partition(":")
    got = 0
    if kind == "kafka":
        from aiokafka import AIOKafkaConsumer, TopicPartition

        # Timed from before start(): the HTTP side opens a fresh consumer per stream too.
        start = time.perf_counter()
        consumer = AIOKafkaConsumer(bootstrap_servers=where, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            deadline = time.monotonic() + timeout
            while got < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                got += sum(len(msgs) for msgs in batches.values())
            elapsed = time.perf_counter() - start
        finally:
            await consumer.stop()
    else:
        from feedserver.storage.db import SQLiteDatabase
        from feedserver.storage.eventlog import EmbeddedEventLog

        log = EmbeddedEventLog(SQLiteDatabase(Path(where)))
        reader = log.reader({(topic, p): 0 for p in range(partitions)})
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        while got < count and time.monotonic() < deadline:
            got += len(await reader.poll(max_records=1000, timeout=1.0))
        elapsed = time.perf_counter() - start
        await reader.close()
    if got < count:
        raise RuntimeError(f"bare consumer read {got} of {count} records in {timeout}s")
    return elapsed


def main(argv: list[str]) -> int:
    if argv[:1] != ["produce"] or len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    target, topic, partitions, start, count, rate = argv[1:]
    t0 = time.perf_counter()
    sent = asyncio.run(produce(target, topic, int(partitions), int(start), int(count),
                               float(rate)))
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - t0,
                      "cpu_seconds": time.process_time()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
