"""The distributed configuration end to end, every feedserver component a separate process with
``FEEDSERVER_MODE=distributed`` against real servers on 127.0.0.1: Tansu (Kafka protocol),
moto_server (S3), PostgreSQL.

Deployment as in ``deploy/``: topics created up front (the init job), a snapshot built from a
real dump into S3, accounts made with the admin CLI, TWO API processes, one event consumer, one
usage consumer. Then, at the same time: the real ``page_change`` events are loaded into Kafka
and streamed from ``/v2/articles`` on API #1 while the snapshot is downloaded in parallel
Range requests from API #2 and checked against the manifest. On-demand lookups go to both. The
usage ledger (API -> Kafka usage topic -> usage consumer -> PostgreSQL) must then equal, to the
byte, what the clients received.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard

from feedserver.ingest.events import changes_from_json
from feedserver.metering.months import month_of
from feedserver.metering.records import utcnow
from tests.conftest import DUMPS, EVENTS, free_port
from tests.fixtures.kafka import TansuBroker
from tests.integration.distributed import (
    MotoServer,
    PostgresServer,
    Process,
    Stack,
    create_topics,
)

pytestmark = pytest.mark.integration

DUMP = (DUMPS / "gensim-4.4.0"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
EVENT_FILES = sorted((EVENTS / "page_change").glob("*.jsonl"))
SNAPSHOT = "enwiki_namespace_0"
PASSWORD = "e2e admin password 1"
NDJSON = "application/x-ndjson"
STREAM_TIMEOUT = 60.0
USAGE_TIMEOUT = 45.0
GRACEFUL = (0, -signal.SIGTERM)


@pytest.fixture
async def stack(tmp_path: Path, moto_server: str, kafka_broker: str,
                fresh_postgres_url: str) -> AsyncIterator[Stack]:
    s = Stack(tmp_path, moto_server, fresh_postgres_url, kafka_broker)
    await create_topics(kafka_broker, s.topics)
    try:
        yield s
    finally:
        s.close()


@dataclass
class Usage:
    """What the clients received, per feed and meter (the ledger's shape)."""

    by_feed: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, feed: str, **meters: int) -> None:
        totals = self.by_feed.setdefault(feed, {})
        for meter, n in meters.items():
            totals[meter] = totals.get(meter, 0) + n

    def response(self, feed: str, resp: httpx.Response, **meters: int) -> None:
        # Byte counts are on the wire: nothing may be content-encoded.
        assert "content-encoding" not in resp.headers
        self.add(feed, requests=1, bytes=len(resp.content), **meters)


def expected_changes() -> list[str]:
    """Event identifiers the consumer must publish (pure mapping of the real events)."""
    ids = []
    for path in EVENT_FILES:
        for line in path.read_bytes().splitlines():
            if line.strip():
                ids += [c.article.event.identifier for c in changes_from_json(line)
                        if c.article.event is not None]
    return ids


def unzstd(data: bytes) -> bytes:
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                    read_across_frames=True) as reader:
        return reader.read()


async def stream_articles(url: str, key: str, want: int, connected: asyncio.Event,
                          usage: Usage) -> list[dict[str, Any]]:
    """NDJSON from the first offset of every partition until ``want`` articles arrived."""
    got: list[dict[str, Any]] = []
    metered = 0
    buf = b""
    headers = {"Authorization": f"Bearer {key}", "Accept": NDJSON}
    body = {"offsets": {str(p): 0 for p in range(10)}}
    async with httpx.AsyncClient(base_url=url, timeout=STREAM_TIMEOUT) as client, \
            client.stream("POST", "/v2/articles", json=body, headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith(NDJSON)
        connected.set()
        async for part in resp.aiter_raw():
            buf += part
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line:  # heartbeat: not metered
                    continue
                data = json.loads(line)
                assert "type" not in data, data  # no closing message expected here
                got.append(data)
                metered += len(line) + 1
            if len(got) >= want:
                break
    usage.add("realtime", requests=1, bytes=metered, stream_events=len(got))
    return got


async def download_snapshot(url: str, auth: dict[str, str], usage: Usage,
                            parts: int = 6) -> tuple[dict[str, Any], bytes]:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=auth) as client:
        meta = await client.get(f"/v2/snapshots/{SNAPSHOT}")
        assert meta.status_code == 200, meta.text
        usage.response("snapshots", meta)
        # The native zstd NDJSON: its chunk bytes are checked against the manifest below.
        native = {"Accept": "application/zstd"}
        head = await client.head(f"/v2/snapshots/{SNAPSHOT}/download", headers=native)
        assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
        usage.add("snapshots", requests=1)
        size = int(head.headers["content-length"])
        step = size // parts + 1
        spans = [(start, min(size, start + step) - 1) for start in range(0, size, step)]

        async def fetch(span: tuple[int, int]) -> bytes:
            r = await client.get(f"/v2/snapshots/{SNAPSHOT}/download", headers={
                **native, "Range": f"bytes={span[0]}-{span[1]}",
                "If-Range": head.headers["etag"]})
            assert r.status_code == 206, r.text
            usage.response("snapshots", r)
            return r.content

        pieces = await asyncio.gather(*(fetch(s) for s in spans))
    usage.add("snapshots", downloads=1)  # parallel Ranges of one version: one download
    return meta.json(), b"".join(pieces)


async def lookups(urls: list[str], auth: dict[str, str], names: list[str],
                  usage: Usage) -> None:
    async with httpx.AsyncClient(timeout=30, headers=auth) as client:
        for i, name in enumerate(names):
            r = await client.get(f"{urls[i % len(urls)]}/v2/articles/{name}")
            assert r.status_code == 200, (name, r.text)
            found = r.json()
            assert found and all(a["name"] == name for a in found)
            usage.response("ondemand", r, articles=len(found))


def report(stack: Stack, month: str) -> dict[str, dict[str, int]]:
    out = stack.cli("usage", "report", "--month", month, "--format", "json",
                    "--customer", "acme").stdout
    customers = json.loads(out)["customers"]
    return customers[0]["by_feed"] if customers else {}


def comparable(by_feed: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    # A stream's duration is whole seconds measured by the server: not a client quantity.
    return {feed: {m: n for m, n in meters.items() if m != "stream_seconds"}
            for feed, meters in by_feed.items()}


async def test_distributed_stack_end_to_end(stack: Stack) -> None:
    # --- batch + admin jobs ------------------------------------------------------------------
    stack.cli("snapshot", "build", "--dump", str(DUMP), "--namespace", "0",
              "--chunk-size", "150000", "--no-progress")
    manifest = json.loads(stack.cli("snapshot", "show", SNAPSHOT).stdout)
    assert len(manifest["chunks"]) >= 2
    stack.cli("snapshot", "load-state", SNAPSHOT)
    stack.cli("customers", "create", "acme", "--plan", "enterprise")
    stack.cli("users", "create", "ops", "--customer", "acme", "--admin", "--password-stdin",
              stdin=PASSWORD + "\n")
    key = stack.cli("keys", "create", "acme").stdout.strip()
    assert key.startswith("fs_")

    # --- long-running processes --------------------------------------------------------------
    metrics_port = free_port()
    events = stack.start("events", "events", "consume", "--metrics-port", str(metrics_port),
                         "--batch-size", "50", port=metrics_port)
    stack.start("usage", "usage", "consume")
    api1, api2 = stack.start_apis("api1", "api2")
    for api in (api1, api2):
        api.wait_http("/readyz")
    events.wait_http("/metrics")

    # One login on API #1, the token used on API #2: the replicas share accounts and secret.
    login = httpx.post(f"{api1.url}/v1/login", json={"username": "ops", "password": PASSWORD},
                       timeout=30)
    assert login.status_code == 200, login.text
    admin_auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    auth = {"Authorization": f"Bearer {key}"}

    # --- stream (API #1) while loading events and downloading (API #2) -----------------------
    usage = Usage()
    want = expected_changes()
    connected = asyncio.Event()
    stream = asyncio.create_task(stream_articles(api1.url, key, len(want), connected, usage))
    await asyncio.wait_for(connected.wait(), 30)
    load = asyncio.create_task(asyncio.to_thread(
        lambda: [stack.cli("events", "load", str(f), "--topic", stack.event_topic)
                 for f in EVENT_FILES]))
    meta, blob = await download_snapshot(api2.url, auth, usage)
    await asyncio.wait_for(load, 60)
    received = await asyncio.wait_for(stream, STREAM_TIMEOUT)

    # Snapshot: the download is the manifest's bytes, chunk by chunk, and holds every article.
    assert meta["identifier"] == SNAPSHOT and meta["version_number"] == manifest["version"]
    assert len(blob) == sum(c["size"] for c in manifest["chunks"])
    zstd = next(f for f in meta["formats"] if f["format"] == "zstd")
    assert hashlib.sha256(blob).hexdigest() == manifest["sha256"] == zstd["sha256"]
    for chunk in manifest["chunks"]:
        piece = blob[chunk["offset"]:chunk["offset"] + chunk["size"]]
        assert hashlib.sha256(piece).hexdigest() == chunk["sha256"]
    records = [json.loads(line) for line in unzstd(blob).splitlines()]
    assert len(records) == manifest["article_count"]

    # Stream: every change exactly once, each with its Kafka position.
    assert sorted(a["event"]["identifier"] for a in received) == sorted(want)
    positions = {(a["event"]["partition"], a["event"]["offset"]) for a in received}
    assert len(positions) == len(received)

    # On-demand, alternating replicas: snapshot articles (state seeded from S3) and articles
    # the event consumer just wrote.
    names = [r["name"] for r in records[:6]] + ["Property:P115", "Lexeme:L4227"]
    await lookups([api1.url, api2.url], auth, names, usage)

    # --- the ledger equals what the clients received -----------------------------------------
    month = month_of(utcnow())
    expected = comparable(usage.by_feed)
    deadline = asyncio.get_running_loop().time() + USAGE_TIMEOUT
    while (seen := comparable(await asyncio.to_thread(report, stack, month))) != expected:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert seen == expected
    via_api = httpx.get(f"{api2.url}/v1/usage", params={"month": month, "customer": "acme"},
                        headers=admin_auth, timeout=30)
    assert via_api.status_code == 200, via_api.text
    assert comparable(via_api.json()["customers"][0]["by_feed"]) == expected
    assert "hash chain intact" in stack.cli("usage", "verify").stdout
    assert all(p.alive() for p in stack.processes), [p.label for p in stack.processes
                                                     if not p.alive()]


# --- readiness follows the real dependencies -----------------------------------------------


def readyz(api: Process, status: int, timeout: float = 60.0) -> httpx.Response:
    last: list[httpx.Response] = []

    def ok() -> bool:
        try:
            last[:] = [httpx.get(api.url + "/readyz", timeout=30)]
        except httpx.TransportError:
            return False
        return last[0].status_code == status

    api.wait_until(ok, f"answering {status} on /readyz", timeout)
    return last[0]


def test_readyz_follows_postgres_s3_and_kafka(tmp_path: Path) -> None:
    """Servers of the test's own, each stopped in turn: /readyz answers 503 problem+json naming
    it (liveness stays 200) and recovers when it is back."""
    moto, broker = MotoServer(), TansuBroker("memory://tansu/", env={"PATH": "/usr/bin:/bin"})
    pg = PostgresServer()
    try:
        pg.start()
        moto.start()
        broker.start()
        stack = Stack(tmp_path, moto.url, pg.url, broker.bootstrap)
        try:
            (api,) = stack.start_apis("api")
            body = readyz(api, 200).json()
            assert body["checks"] == {"blobs": "ok", "database": "ok", "events": "ok"}
            for server, check in ((broker, "events"), (moto, "blobs"), (pg, "database")):
                server.stop()
                down = readyz(api, 503)
                assert down.headers["content-type"].startswith("application/problem+json")
                problem = down.json()
                assert problem["status"] == 503 and check in problem["detail"], problem
                assert problem[check].startswith("failed"), problem
                assert all(problem[c] == "ok" for c in ("blobs", "database", "events")
                           if c != check), problem
                assert httpx.get(api.url + "/healthz", timeout=10).status_code == 200
                server.start()
                readyz(api, 200)
        finally:
            stack.close()
    finally:
        broker.stop()
        moto.stop()
        pg.remove()


# --- graceful shutdown: an open stream ends with a resumable position ------------------------


async def read_stream(url: str, key: str, offsets: dict[str, int], *, until: int,
                      on_count: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """NDJSON articles, and the closing message if the server ended the stream. Stops after
    ``until`` articles unless ``on_count`` (called once at ``until``) makes the server end it."""
    got: list[dict[str, Any]] = []
    closing: dict[str, Any] | None = None
    headers = {"Authorization": f"Bearer {key}", "Accept": NDJSON}
    async with httpx.AsyncClient(base_url=url, timeout=STREAM_TIMEOUT) as client, \
            client.stream("POST", "/v2/articles", json={"offsets": offsets},
                          headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if not line:
                continue
            data = json.loads(line)
            if "type" in data:
                closing = data
                break
            got.append(data)
            if len(got) == until:
                if on_count is None:
                    break
                on_count()
    return got, closing


def event_ids(lines: list[bytes]) -> list[str]:
    return [c.article.event.identifier for line in lines for c in changes_from_json(line)
            if c.article.event is not None]


async def test_sigterm_ends_open_stream_with_resumable_offsets(stack: Stack) -> None:
    lines = [line for f in EVENT_FILES for line in f.read_bytes().splitlines() if line.strip()]
    first, rest = lines[: len(lines) // 2], lines[len(lines) // 2:]

    def publish(batch: list[bytes]) -> None:
        stack.cli("events", "load", "-", "--topic", stack.event_topic,
                  stdin=b"\n".join(batch).decode() + "\n")

    stack.cli("customers", "create", "acme", "--plan", "enterprise")
    key = stack.cli("keys", "create", "acme").stdout.strip()
    stack.start("events", "events", "consume")
    api1, api2 = stack.start_apis("api1", "api2")
    publish(first)

    # Read everything there is on API #1, then SIGTERM it with the stream open.
    got, closing = await asyncio.wait_for(read_stream(
        api1.url, key, {str(p): 0 for p in range(10)}, until=len(event_ids(first)),
        on_count=lambda: api1.signal(signal.SIGTERM)), STREAM_TIMEOUT)
    assert sorted(a["event"]["identifier"] for a in got) == sorted(event_ids(first))
    assert closing is not None and closing["reason"] == "shutdown", closing
    assert closing["status"] == 503 and closing["type"].endswith("/stream-closed")
    offsets = closing["offsets"]
    for a in got:  # the position is after everything delivered
        assert offsets[str(a["event"]["partition"])] > a["event"]["offset"]
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown (exit status -15).
    assert api1.wait() in GRACEFUL

    # Resume on API #2 from the final position: exactly the events published since.
    publish(rest)
    more, _ = await asyncio.wait_for(read_stream(api2.url, key, offsets,
                                                 until=len(event_ids(rest))), STREAM_TIMEOUT)
    assert sorted(a["event"]["identifier"] for a in more) == sorted(event_ids(rest))
    api2.signal(signal.SIGTERM)
    assert api2.wait() in GRACEFUL
