"""``feedserver serve``: run the HTTP API under uvicorn.

With ``--workers N`` uvicorn starts N processes, each building its own app (and its own
Prometheus registry: scrape each worker, or run one worker per container) from the same
``FEEDSERVER_*`` settings through ``feedserver.api.app:app_from_env``.
"""

from __future__ import annotations

import argparse
from typing import Any

from feedserver.config import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the HTTP API (uvicorn)",
        description="Serve the feeds API; settings come from FEEDSERVER_* / FEEDSERVER_CONFIG.",
    )
    p.add_argument("--host", default=None, help="bind address (default: settings.host)")
    p.add_argument("--port", type=int, default=None, help="port (default: settings.port)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(handler=serve)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    uvicorn.run(
        "feedserver.api.app:app_from_env", factory=True,
        host=args.host or settings.host, port=args.port or settings.port,
        workers=args.workers, log_level=settings.log_level.lower(),
        proxy_headers=True, server_header=False, timeout_graceful_shutdown=10,
    )
    return 0
