"""Operational endpoints: ``/healthz`` (process up), ``/readyz`` (blob store, database and
event log reachable) and ``/metrics`` (Prometheus text format, from the app's
own registry).

They are unauthenticated and unmetered: put them behind the load balancer's private listener.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Response, Router, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from feedserver.api.problems import problem_response
from feedserver.api.protocols import Injected
from feedserver.api.query import ENCODER
from feedserver.errors import FeedError
from feedserver.metrics import Metrics
from feedserver.storage.blobs import BlobStore
from feedserver.storage.db import Database
from feedserver.storage.eventlog import EventLog

PROBE_KEY = "readyz-probe"
EVENTS_PROBE_SECONDS = 5.0


@get("/healthz", include_in_schema=False)
async def healthz() -> Response[bytes]:
    return Response(b'{"status":"ok"}', media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@get("/readyz", include_in_schema=False)
async def readyz(blobs: Injected[BlobStore], db: Injected[Database], events: Injected[EventLog]
                 ) -> Response[Any]:
    checks: dict[str, str] = {}

    def probe() -> None:
        try:
            blobs.exists(PROBE_KEY)
            checks["blobs"] = "ok"
        except (FeedError, OSError) as exc:
            checks["blobs"] = f"failed: {type(exc).__name__}"
        try:
            db.fetchone("SELECT 1")
            checks["database"] = "ok"
        except (FeedError, OSError) as exc:
            checks["database"] = f"failed: {type(exc).__name__}"

    with anyio.fail_after(10):
        await anyio.to_thread.run_sync(probe)
    # The realtime stream reads the event log and, in distributed mode, usage goes there.
    try:
        await events.probe(EVENTS_PROBE_SECONDS)
        checks["events"] = "ok"
    except FeedError as exc:
        checks["events"] = f"failed: {type(exc).__name__}"
    failed = sorted(k for k, v in checks.items() if v != "ok")
    if failed:
        return problem_response(503, "unavailable", "Service unavailable",
                                f"not ready: {', '.join(failed)}", "/readyz",
                                extra={k: v for k, v in checks.items()})
    return Response(ENCODER.encode({"status": "ready", "checks": checks}),
                    media_type="application/json", headers={"Cache-Control": "no-store"})


@get("/metrics", include_in_schema=False)
async def scrape(metrics: Injected[Metrics]) -> Response[bytes]:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def router() -> Router:
    return Router("/", route_handlers=[healthz, readyz, scrape])
