"""Helpers for the realtime HTTP tests: the API under a real uvicorn on 127.0.0.1 (in a thread,
its own event loop), accounts with realtime plans, an SSE/NDJSON client that keeps its
positions, and synthetic page_change events derived from the real ones."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import FeedApp, build_app
from feedserver.config import Settings
from feedserver.feeds.realtime.hub import Hub
from feedserver.plans import Plan
from feedserver.storage.db import Database
from tests.conftest import EVENTS
from tests.fixtures.asgi import serve_in_thread

REAL_EVENTS = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"


@dataclass
class Keys:
    everything: str
    commons_only: str
    no_realtime: str


def make_accounts(db: Database, settings: Settings) -> tuple[Accounts, Keys]:
    accounts = Accounts(db, settings)
    accounts.create_plan(Plan(name="rt-all", feeds=["realtime", "batches"]))
    accounts.create_plan(Plan(name="rt-commons", feeds=["realtime", "batches"],
                              projects=["commonswiki"]))
    accounts.create_plan(Plan(name="snap", feeds=["snapshots"]))
    keys = []
    for customer, plan in (("all", "rt-all"), ("commons", "rt-commons"), ("snap", "snap")):
        accounts.create_customer(customer, plan)
        keys.append(accounts.create_api_key(customer)[1])
    return accounts, Keys(*keys)


@dataclass
class Server:
    """The app being served and its base URL."""

    app: FeedApp
    url: str

    @property
    def hub(self) -> Hub:
        """The app's realtime hub (opened by the first stream)."""
        hub = self.app.services.realtime.current
        assert hub is not None
        return hub

    def call(self, fn: Any) -> None:
        """Run ``fn()`` on the server's loop (e.g. ``hub.end_streams``)."""
        loop = self.hub._task.get_loop() if self.hub._task else None
        assert loop is not None
        loop.call_soon_threadsafe(fn)


@contextlib.contextmanager
def serve(settings: Settings, db: Database, accounts: Accounts, *, events: Any = None,
          usage: Any = None, heartbeat: float = 0.5) -> Iterator[Server]:
    app = build_app(settings, db=db, events=events, accounts=accounts, usage=usage,
                    registry=CollectorRegistry(), realtime_heartbeat=heartbeat)
    with serve_in_thread(app, graceful_shutdown=5) as url:
        yield Server(app, url)


@dataclass
class StreamClient:
    """Reads ``/v2/articles`` and keeps, like a real client, its positions and what it got."""

    url: str
    key: str
    ndjson: bool = False
    body: dict[str, Any] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    last_event_id: str | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    closings: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.ndjson:
            headers["Accept"] = "application/x-ndjson"
        if self.last_event_id and not self.ndjson:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def request_body(self) -> dict[str, Any]:
        body = dict(self.body)
        if self.positions:  # resume: offsets are inclusive, so last + 1
            body["offsets"] = {str(p): o for p, o in self.positions.items()}
            body.pop("since", None)
            body.pop("since_per_partition", None)
        return body

    async def messages(self, client: httpx.AsyncClient, *, stop_after: float
                       ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """One connection: ``("message" | "error" | "heartbeat", data)`` until the server ends
        the stream or ``stop_after`` seconds pass."""
        self.connections += 1
        deadline = time.monotonic() + stop_after
        async with client.stream("POST", f"{self.url}/v2/articles", json=self.request_body(),
                                 headers=self._headers(), timeout=httpx.Timeout(10.0)) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise AssertionError(f"{resp.status_code}: {resp.text}")
            event, data, ident = "message", "", None
            async for line in resp.aiter_lines():
                if time.monotonic() > deadline:
                    return
                if self.ndjson:
                    if not line:
                        yield "heartbeat", {}
                        continue
                    obj = json.loads(line)
                    kind = "error" if "name" not in obj else "message"
                    self._note(kind, obj)
                    yield kind, obj
                    continue
                if line.startswith("id: "):
                    ident = line[4:]
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif line.startswith(":"):
                    continue
                elif line == "":
                    if ident is not None:
                        self.last_event_id = ident
                    if data:
                        obj = json.loads(data)
                        self._note(event, obj)
                        yield event, obj
                    elif ident is None:
                        yield "heartbeat", {}
                    event, data, ident = "message", "", None

    def _note(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "message":
            ev = obj["event"]
            self.received.append(obj)
            self.positions[ev["partition"]] = ev["offset"] + 1
        else:
            self.closings.append(obj)
            self.positions.update({int(p): o for p, o in obj["offsets"].items()})

    async def read_until(self, client: httpx.AsyncClient, count: int, *, timeout: float,
                         connection_time: float = 5.0, stall: float | None = None) -> None:
        """Reconnect (from saved positions) until ``count`` messages arrived in total, for at
        most ``timeout`` seconds, or (with ``stall``) until none arrived for ``stall`` seconds."""
        deadline = time.monotonic() + timeout
        seen, progress = len(self.received), time.monotonic()
        while len(self.received) < count and time.monotonic() < deadline:
            if len(self.received) > seen:
                seen, progress = len(self.received), time.monotonic()
            elif stall is not None and time.monotonic() - progress > stall:
                return
            with contextlib.suppress(httpx.HTTPError):
                async for _kind, _ in self.messages(client, stop_after=connection_time):
                    if len(self.received) >= count:
                        return
            await asyncio.sleep(0.1)


def real_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in REAL_EVENTS.read_text().splitlines() if line.strip()]


def synthetic_events(count: int, *, body_bytes: int = 0, start: int = 0
                     ) -> list[dict[str, Any]]:
    """``count`` distinct edits derived from the real events: new page ids, revision ids,
    event ids and times; with ``body_bytes`` each carries that much revision text."""
    base = [e for e in real_events() if e["page_change_kind"] in ("edit", "create")]
    out = []
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(start, start + count):
        event = copy.deepcopy(base[i % len(base)])
        page = 10_000_000 + i
        event["page"]["page_id"] = page
        event["page"]["page_title"] = f"Synthetic_{i}"
        event["revision"]["rev_id"] = 50_000_000 + i
        event["revision"]["rev_parent_id"] = None
        when = (t0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        event["dt"] = event["meta"]["dt"] = event["revision"]["rev_dt"] = when
        event["meta"]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"synthetic-{i}"))
        event.pop("prior_state", None)
        if body_bytes:
            slots = event["revision"].setdefault("content_slots", {})
            main = slots.setdefault("main", {"slot_role": "main",
                                             "content_model": "wikitext",
                                             "content_format": "text/x-wiki"})
            main["content_body"] = f"Synthetic page {i}. " + "x" * body_bytes
        out.append(event)
    return out


def encode(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=str(tmp_path), metering_enabled=False, article_partitions=4,
                    token_secret="realtime-test-secret-0123456789abcdef", **overrides)
