"""``create_app``: the litestar application factory.

Components may be injected (tests, embedding) or are opened in the app's lifespan from the
``Settings`` and closed on shutdown; there are no module globals, so several apps can live in
one process. Route modules are listed in ``ROUTE_MODULES``: a new feed adds
``feedserver/api/<name>.py`` exposing ``ROUTES`` (route handlers / routers) or ``router()``, and
appends its name to the tuple.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio.to_thread
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Message
from prometheus_client import CollectorRegistry

from feedserver import __version__
from feedserver.api.portal import TEMPLATES as PORTAL_TEMPLATES
from feedserver.api.problems import handle_exception
from feedserver.api.services import (
    Accounts,
    ArticleState,
    Services,
    Snapshots,
    new_request_id,
)
from feedserver.config import Settings
from feedserver.logs import REQUEST_ID
from feedserver.metering.records import NullSink, UsageSink
from feedserver.metrics import Metrics
from feedserver.storage.blobs import BlobStore
from feedserver.storage.db import Database, connect

ROUTE_MODULES: tuple[str, ...] = ("health", "auth", "metadata", "snapshots", "ondemand",
                                  "usage", "diffs", "realtime", "batches", "portal")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
log = logging.getLogger("feedserver.api")
access = logging.getLogger("feedserver.access")


def route_handlers() -> list[Any]:
    handlers: list[Any] = []
    for name in ROUTE_MODULES:
        module = importlib.import_module(f"feedserver.api.{name}")
        routes = getattr(module, "ROUTES", None)
        if routes is None:
            routes = module.router()
        handlers.extend(routes if isinstance(routes, list | tuple) else [routes])
    return handlers


class FeedApp(Litestar):
    """Litestar plus request metrics measured around EVERY request (404s and 405s included,
    which never reach route middleware). Labels use the route template, never the raw path."""

    metrics: Metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        sent = 0
        method = str(scope.get("method", "")).upper()
        method = method if method in _METHODS else "OTHER"

        given = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"")
        rid = new_request_id(given.decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = rid
        token = REQUEST_ID.set(rid)  # every log line of this request carries it

        def route() -> str:
            return str(scope.get("path_template") or "unmatched")

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.metrics.http_latency.labels(route(), method).observe(
                    time.perf_counter() - start)
                # The correlation id stored with usage records: a client can quote it.
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await super().__call__(scope, receive, send_wrapper)
        finally:
            self.metrics.http_requests.labels(route(), method, str(status)).inc()
            if sent:
                self.metrics.http_bytes.labels(route()).inc(sent)
            access.info("%s %s %s", method, route(), status, extra={
                "status": status, "bytes": sent, "seconds": round(time.perf_counter() - start, 6)})
            REQUEST_ID.reset(token)


def create_app(
    settings: Settings,
    *,
    blobs: BlobStore | None = None,
    db: Database | None = None,
    accounts: Accounts | None = None,
    snapshots: Snapshots | None = None,
    state: ArticleState | None = None,
    usage: UsageSink | None = None,
    registry: CollectorRegistry | None = None,
    metering: Any = None,
) -> Litestar:
    """The API. Anything not injected is opened in the lifespan from ``settings``.

    ``usage`` is the per-response usage seam (``UsageSink``); with neither ``usage`` nor
    ``metering`` given and ``settings.metering_enabled``, a ``Metering`` is opened on the
    database and its sink and admission (rate limits, quotas) are used.
    """
    metrics = Metrics(registry)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            svc = await _open(settings, stack, blobs=blobs, db=db, accounts=accounts,
                              snapshots=snapshots, state=state, usage=usage, metering=metering,
                              metrics=metrics)
            app.state.services = svc
            app.state.metering = svc.metering
            # Components opened lazily (the realtime hub) register their closing here: hooks
            # appended to ``app.on_shutdown`` after start-up are never called by litestar.
            app.state.exit_stack = stack
            yield

    app = FeedApp(
        route_handlers=route_handlers(),
        lifespan=[lifespan],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=settings.max_body_bytes,
        template_config=PORTAL_TEMPLATES,
        openapi_config=OpenAPIConfig(
            title="feedserver", version=__version__, path="/schema",
            render_plugins=[JsonRenderPlugin()],
            description="Licensed MediaWiki data feeds (WME-compatible API). Errors are "
                        "RFC 9457 application/problem+json.",
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer",
                                         description="Access token from /v1/login, or an "
                                                     "fs_ API key"),
                "apiKey": SecurityScheme(type="apiKey", name="X-API-Key",
                                         security_scheme_in="header"),
            }),
            security=[{"bearer": []}, {"apiKey": []}],
        ),
        debug=False,
        logging_config=None,
    )
    app.metrics = metrics
    return app


async def _open(settings: Settings, stack: AsyncExitStack, *, blobs: BlobStore | None,
                db: Database | None, accounts: Accounts | None, snapshots: Snapshots | None,
                state: ArticleState | None, usage: UsageSink | None, metering: Any,
                metrics: Metrics) -> Services:
    if blobs is None:
        from feedserver.storage.factory import open_blob_store

        blobs = await anyio.to_thread.run_sync(open_blob_store, settings)
    if db is None:
        db = await anyio.to_thread.run_sync(connect, settings.database)
        stack.callback(db.close)
    if snapshots is None:
        from feedserver.feeds.snapshots import SnapshotStore

        snapshots = SnapshotStore(blobs)
    if state is None:
        from feedserver.feeds.state import StateStore

        state = await anyio.to_thread.run_sync(StateStore, db)
    if accounts is None:
        accounts = await anyio.to_thread.run_sync(_open_accounts, settings, db)
    admitter: Callable[..., Any] | None = None
    counters: Any = None
    if metering is None and usage is None and settings.metering_enabled:
        from feedserver.metering.service import open_metering

        metering = await anyio.to_thread.run_sync(open_metering, settings, db)
    if metering is not None:
        await metering.start()
        stack.push_async_callback(metering.stop)
        usage = usage or metering.sink
        admitter = metering.admit
        counters = metering.counters
    svc = Services(settings=settings, blobs=blobs, db=db, accounts=accounts,
                   snapshots=snapshots, state=state, usage=usage or NullSink(),
                   admitter=admitter, metrics=metrics, counters=counters, metering=metering)
    return svc


def _open_accounts(settings: Settings, db: Database) -> Accounts:
    from feedserver.accounts.service import Accounts as AccountsService

    return AccountsService(db, settings)


def openapi_document(app: Litestar | None = None) -> dict[str, Any]:
    """The OpenAPI document of the app (for ``schemas/openapi.json``)."""
    from feedserver.config import Settings as _Settings

    app = app or create_app(_Settings(), registry=CollectorRegistry())
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


def app_from_env() -> Litestar:
    """uvicorn factory (``feedserver serve``): settings from the environment."""
    from feedserver.config import load_settings
    from feedserver.logs import setup_logging

    settings = load_settings()
    setup_logging(settings)  # each uvicorn worker is a fresh process
    return create_app(settings)
