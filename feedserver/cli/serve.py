"""``feedserver serve``: run the HTTP API under uvicorn.

With ``--workers N`` N processes each build their own app (and their own Prometheus
registry: scrape each worker, or run one worker per container) from the same ``FEEDSERVER_*``
settings through ``feedserver.api.app:app_from_env``, each listening on a socket of its own
(``SO_REUSEPORT``, ``cli/workers.py``) so that the kernel spreads connections evenly. The
HTTP protocol is uvicorn's h11 one with the ASGI zero-copy extension
(``api/zerocopy_server.py``), so file downloads are sent with ``sendfile(2)``.
"""

from __future__ import annotations

import argparse
from typing import Any

from feedserver.cli.command import bind
from feedserver.config import Settings
from feedserver.feeds.scratch import scratch_root, sweep


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the HTTP API (uvicorn)",
        description="Serve the feeds API; settings come from FEEDSERVER_* / FEEDSERVER_CONFIG.",
    )
    p.add_argument("--host", default=None, help="bind address (default: settings.host)")
    p.add_argument("--port", type=int, default=None, help="port (default: settings.port)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    bind(p, serve)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None,
          workers: int = 1) -> int:
    import uvicorn

    from feedserver.api.zerocopy_server import ZeroCopyH11Protocol
    from feedserver.cli.workers import run_workers

    if workers < 1:
        raise ValueError("--workers must be at least 1")
    sweep(scratch_root(settings.data_path))  # scratch of builds killed earlier
    options: dict[str, Any] = dict(
        app="feedserver.api.app:app_from_env", factory=True,
        host=host or settings.host, port=port or settings.port,
        log_level=settings.log_level.lower(),
        # Logging is feedserver.logs' (JSON or text, request ids); the app logs each request.
        log_config=None, access_log=False,
        proxy_headers=True, server_header=False, timeout_graceful_shutdown=10,
        # uvicorn's h11 protocol plus the ASGI zero-copy extension: file downloads go out
        # with sendfile(2) (feedserver.api.zerocopy)
        http=ZeroCopyH11Protocol,
    )
    if workers == 1:
        uvicorn.run(**options)
        return 0
    # A listening socket per worker: connections spread evenly (cli/workers.py).
    return run_workers(uvicorn.Config(**options), workers)
