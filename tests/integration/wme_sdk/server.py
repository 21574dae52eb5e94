"""A real feedserver for the official WME Python SDK, built the way an operator builds one.

Every piece of data comes from the shared real dumps and events, through the CLI a deployment
uses (``feedserver snapshot build``, which also seeds on-demand, ``events load`` + ``events
consume``, ``plans``/``customers``/``users``/``keys create``), then ``feedserver serve`` runs as
its own process on a free 127.0.0.1 port. The SDK is imported unmodified from
``../shared/clients/wme-sdk-python`` and only its base URLs are pointed at that server.

``tests/integration/wme_sdk/conftest.py`` keeps one for the whole session: building it is the
slow part, and the SDK calls only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import DUMPS, EVENTS, free_port
from tests.fixtures.processes import stop_process

ENWIKI = (DUMPS / "gensim-4.4.0"
          / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
CORPUS = DUMPS / "gensim-4.4.0" / "testcorpus.xml.bz2"
VOYAGE = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
PAGE_CHANGE = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"

USERNAME = "acme-user"
PASSWORD = "wme sdk integration password"
# A plan like WME's paid group 3 (every feed) with WME's free-tier monthly caps, so that
# /v1/get-user has limits to report; the rate limit is high enough for parallel Range GETs.
PLAN = {
    "name": "wme",
    "description": "every feed, WME caps",
    "feeds": ["snapshots", "diffs", "ondemand", "realtime", "batches", "structured_contents"],
    "projects": ["*"],
    "quotas": {"snapshot_downloads": 30, "chunk_downloads": 1500, "ondemand_lookups": 50000},
    "rate_limit": {"requests_per_second": 1000, "burst": 2000},
}
START_TIMEOUT = 60.0
CLI_TIMEOUT = 300


@dataclass
class WMEServer:
    """The running server and what was built into it."""

    url: str
    data_dir: Path
    env: dict[str, str]
    api_key: str
    # Snapshot identifiers built (articles, Structured Contents), and the hours batches were
    # sealed for.
    snapshots: list[str]
    structured: list[str]
    batch_hours: list[datetime]
    # Wall-clock bounds of the realtime events' arrival (their record timestamps).
    events_from: datetime
    events_until: datetime
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    env.update({
        "FEEDSERVER_DATA_DIR": str(data_dir),
        "FEEDSERVER_TOKEN_SECRET": "wme-sdk-integration-secret-0123456789abcdef",
        "FEEDSERVER_LOG_LEVEL": "WARNING",
        "FEEDSERVER_LOG_FORMAT": "text",
        # Structured Contents versions of the articles (namespace 0), as WME offers them.
        "FEEDSERVER_STRUCTURED_NAMESPACES": "0",
    })
    return env


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "feedserver", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    if done.returncode != 0:
        raise AssertionError(f"feedserver {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _seal_batches(env: dict[str, str], since: datetime, until: datetime) -> list[datetime]:
    """Seal the hours the consumed events fell in. The consumer appended them just now, so
    their hour is not over yet: the builder is given a clock past the hour's end plus grace,
    exactly what ``feedserver batches build`` does an hour later."""
    from feedserver.config import load_settings
    from feedserver.feeds.batches import hours
    from feedserver.feeds.batches.build import build_hour
    from feedserver.storage.blobs import open_blob_store
    from feedserver.storage.db import connect
    from feedserver.storage.eventlog import open_event_log

    settings = load_settings(env)
    wanted = sorted({hours.hour_of(int(since.timestamp() * 1000)),
                     hours.hour_of(int(until.timestamp() * 1000))})

    async def build() -> None:
        db = connect(settings.database)
        log = open_event_log(settings, db)
        try:
            for hour in wanted:
                await build_hour(log, open_blob_store(settings), settings, hour,
                                 clock=lambda h=hour: hours.end_ms(h) + hours.DEFAULT_GRACE_MS)
        finally:
            await log.close()
            db.close()

    asyncio.run(build())
    return wanted


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"feedserver serve exited: {log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"feedserver serve not ready in {START_TIMEOUT} s")


@contextlib.contextmanager
def running_server(tmp: Path) -> Iterator[WMEServer]:
    """Build everything under ``tmp``, serve it until the block ends."""
    data_dir = tmp / "var"
    env = cli_env(data_dir)
    # Small chunks: the SDK's chunk calls need snapshots of several chunks.
    cli(env, "snapshot", "build", "--dump", str(ENWIKI), "--chunk-size", "65536",
        "--no-progress")
    # The same real corpus under two projects: one title in several projects, so that
    # on-demand's project selection (in_language / is_part_of) has something to choose from.
    cli(env, "snapshot", "build", "--dump", str(CORPUS), "--wiki", "simplewiki", "--no-progress")
    cli(env, "snapshot", "build", "--dump", str(CORPUS), "--wiki", "dewiki", "--no-progress")
    # Greek Wikivoyage: articles and templates, many titles containing "/".
    cli(env, "snapshot", "build", "--dump", str(VOYAGE), "--namespace", "0", "--namespace", "10",
        "--chunk-size", "262144", "--no-progress")
    # No load-state step: a build seeds on-demand with what it published.
    snapshots = [line.split("\t")[0] for line in cli(env, "snapshot", "list").splitlines()]
    # The builds above made the Structured Contents snapshots in the same pass; each verifies.
    structured = [line.split("\t")[0]
                  for line in cli(env, "snapshot", "list", "--structured").splitlines()]
    for identifier in structured:
        cli(env, "snapshot", "verify", "--structured", identifier)

    events_from = datetime.now(UTC)
    cli(env, "events", "load", str(PAGE_CHANGE))
    cli(env, "events", "consume", "--once")
    events_until = datetime.now(UTC)
    batch_hours = _seal_batches(env, events_from, events_until)

    plan_file = tmp / "plan.json"
    plan_file.write_text(json.dumps(PLAN))
    cli(env, "plans", "create", "wme", "--from-json", str(plan_file))
    cli(env, "customers", "create", "acme", "--plan", "wme")
    cli(env, "users", "create", USERNAME, "--customer", "acme", "--password-stdin",
        stdin=PASSWORD + "\n")
    api_key = cli(env, "keys", "create", "acme").strip()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "feedserver", "serve", "--host", "127.0.0.1",
             "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_ready(url, proc, log_path)
            yield WMEServer(url=url, data_dir=data_dir, env=env, api_key=api_key,
                            snapshots=snapshots, structured=structured,
                            batch_hours=batch_hours,
                            events_from=events_from, events_until=events_until,
                            log_path=log_path)
        finally:
            stop_process(proc, timeout=20)


def article_records(server: WMEServer) -> list[Any]:
    """Every record of the article topic (what realtime serves and batches are cut from), read
    straight from the server's event log: the reference the SDK's answers are checked
    against."""
    from feedserver.config import load_settings
    from feedserver.storage.db import connect
    from feedserver.storage.eventlog import LogRecord, open_event_log, read

    settings = load_settings(server.env)

    async def collect() -> list[LogRecord]:
        db = connect(settings.database)
        log = open_event_log(settings, db)
        try:
            ends = await log.end_offsets(settings.article_topic)
            start = {(settings.article_topic, p): 0 for p in ends}
            return [r async for r in read(log, start, follow=False, poll_timeout=2.0)]
        finally:
            await log.close()
            db.close()

    return asyncio.run(collect())
