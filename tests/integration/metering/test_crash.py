"""Must-show: concurrent downloads (whole chunks, parallel Ranges) and on-demand lookups against
a real server process, ``kill -9`` mid-way, restart, and the ledger equals, to the byte, what the
clients received: the write-ahead journal replays what the ledger had not committed yet.

The ledger is made to lag on purpose (``FEEDSERVER_LEDGER_FLUSH_SECONDS=3600``): at the kill,
every delivered response exists only in the journal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from feedserver.accounts.admin import AccountAdmin
from feedserver.feeds.events.state import StateStore
from feedserver.ingest.dump import read_dump
from feedserver.metering.ledger import Ledger
from feedserver.models import Article
from feedserver.plans import Plan, Prices, Quotas
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS, ROOT, free_port

pytestmark = pytest.mark.integration

DUMP = (DUMPS / "gensim-4.4.0"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
SNAPSHOT = "enwiki_namespace_0"
PLAN = Plan(name="e2e-metered", feeds=["snapshots", "ondemand"],
            quotas=Quotas(ondemand_lookups=100_000, chunk_downloads=100_000),
            prices=Prices(per_gb_egress=Decimal("0.09")))


@dataclass
class Received:
    bytes: int = 0
    responses: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass
class Fixture:
    data_dir: Path
    env: dict[str, str]
    key: str
    names: list[str]
    port: int = field(default_factory=free_port)


@pytest.fixture
def world(tmp_path: Path) -> Fixture:
    env = {**os.environ, "FEEDSERVER_DATA_DIR": str(tmp_path), "FEEDSERVER_LOG_LEVEL": "WARNING",
           "FEEDSERVER_LEDGER_FLUSH_SECONDS": "3600", "FEEDSERVER_LEDGER_BATCH_SIZE": "1000000",
           "PYTHONPATH": str(ROOT)}
    build = subprocess.run(
        [sys.executable, "-m", "feedserver", "snapshot", "build", "--dump", str(DUMP),
         "--namespace", "0", "--chunk-size", "150000", "--no-progress"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    try:
        _, records = read_dump(DUMP, namespaces={0})
        articles = [r for r in records if isinstance(r, Article)]
        StateStore(db).load_articles(articles)
        admin = AccountAdmin(db)
        admin.create_plan(PLAN)
        admin.create_customer("Acme", plan=PLAN.name)
        _, key = admin.create_api_key("Acme")
    finally:
        db.close()
    return Fixture(tmp_path, env, key, [a.name for a in articles[:40]])


@pytest.fixture
def server(world: Fixture) -> Iterator[ServerProcess]:
    proc = ServerProcess(world)
    yield proc
    proc.kill()


class ServerProcess:
    def __init__(self, world: Fixture) -> None:
        self.world = world
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.world.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "feedserver", "serve", "--port", str(self.world.port)],
            env=self.world.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.1)

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.stop(signal.SIGKILL)


async def workload(base: str, key: str, names: list[str], chunks: list[str], got: Received,
                   *, until: int) -> None:
    """Four clients mixing whole-chunk downloads, parallel Range requests of the snapshot and
    lookups; each stops after its current request once ``until`` responses are complete."""
    headers = {"Authorization": f"Bearer {key}"}

    async def fetch(client: httpx.AsyncClient, path: str, extra: dict[str, str]) -> None:
        async with client.stream("GET", path, headers={**headers, **extra}) as resp:
            n = 0
            async for part in resp.aiter_raw():
                n += len(part)
        got.statuses[resp.status_code] = got.statuses.get(resp.status_code, 0) + 1
        if resp.status_code < 400:
            got.bytes += n
            got.responses += 1

    async def client_loop(worker: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            i = worker
            while got.responses < until:
                kind = i % 3
                if kind == 0:
                    await fetch(client, f"/v2/snapshots/{SNAPSHOT}/chunks/"
                                f"{chunks[i % len(chunks)]}/download", {})
                elif kind == 1:
                    start = (i * 7919) % 100_000
                    await fetch(client, f"/v2/snapshots/{SNAPSHOT}/download",
                                {"Range": f"bytes={start}-{start + 20_000 + i}"})
                else:
                    await fetch(client, f"/v2/articles/{names[i % len(names)]}", {})
                i += 4

    await asyncio.wait_for(asyncio.gather(*(client_loop(w) for w in range(4))), 240)


def ledger_totals(data_dir: Path) -> tuple[int, int, bool]:
    db = SQLiteDatabase(data_dir / "feedserver.db")
    try:
        ledger = Ledger(db)
        row = db.fetchone("SELECT "
                          "COALESCE(SUM(CASE WHEN meter = 'bytes' THEN quantity END), 0), "
                          "COALESCE(SUM(CASE WHEN meter = 'requests' THEN quantity END), 0) "
                          "FROM usage_ledger")
        assert row is not None
        return int(row[0]), int(row[1]), ledger.verify().ok
    finally:
        db.close()


async def test_kill_9_mid_way_loses_and_doubles_nothing(world: Fixture,
                                                        server: ServerProcess) -> None:
    server.start()
    listing = httpx.get(f"{server.url}/v2/snapshots/{SNAPSHOT}/chunks",
                        headers={"Authorization": f"Bearer {world.key}"}, timeout=30)
    assert listing.status_code == 200, listing.text
    chunks = [c["identifier"] for c in listing.json()]
    assert len(chunks) >= 2
    got = Received(bytes=len(listing.content), responses=1)  # metadata is metered too
    await workload(server.url, world.key, world.names, chunks, got, until=60)
    assert got.statuses.keys() <= {200, 206}, got.statuses
    # The last responses are complete on the client: give their (already queued) journal
    # writes a moment, then kill the server with the ledger far behind.
    await asyncio.sleep(0.5)
    server.stop(signal.SIGKILL)
    journal = world.data_dir / "usage-journal"
    assert any(journal.iterdir()), "the journal should hold what the ledger had not committed"
    assert ledger_totals(world.data_dir)[0] < got.bytes

    server.start()  # replays the journal into the ledger
    await workload(server.url, world.key, world.names, chunks, got, until=got.responses + 30)
    await asyncio.sleep(0.5)
    server.stop(signal.SIGTERM)  # graceful: flushes the writer

    ledger_bytes, ledger_requests, chain_ok = ledger_totals(world.data_dir)
    assert ledger_bytes == got.bytes
    assert ledger_requests == got.responses
    assert chain_ok
