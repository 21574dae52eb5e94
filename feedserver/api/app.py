"""``build_app``: the one composition root of the HTTP API.

Everything the API serves with is either handed in (tests, embedding) or opened here, in the
app's lifespan, from the ``Settings``, and closed on shutdown in reverse order: blob store,
database, event log, accounts, state store, metering, the realtime service. Handlers receive
the components they name through litestar dependency injection (``_dependencies``); there are
no module globals, so several apps can live in one process. Every router is listed in
``ROUTERS`` / ``WME_ROUTERS``: a new feed adds ``feedserver/api/<name>.py`` with a ``router()``
and one line here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import FrameType
from typing import Any, TypeVar

import anyio.to_thread
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from feedserver import __version__
from feedserver.accounts.service import Accounts as AccountsService
from feedserver.api import (
    auth,
    batches,
    diffs,
    health,
    metadata,
    ondemand,
    parquet,
    portal,
    realtime,
    snapshots,
    structured,
    structured_parquet,
    structured_snapshots,
    usage,
)
from feedserver.api.body_writes import BODY_PARTS
from feedserver.api.cors import cors_middleware
from feedserver.api.malloc_tuning import keep_freed_memory
from feedserver.api.metered import Metered
from feedserver.api.portal import TEMPLATES as PORTAL_TEMPLATES
from feedserver.api.portal.context import Portals
from feedserver.api.problems import handle_exception
from feedserver.api.protocols import Accounts, ArticleState, Snapshots
from feedserver.api.realtime_metering import StreamMetering
from feedserver.api.services import LATER_HEADERS, Billing, Lookups, Services, new_request_id
from feedserver.api.verified import VerifiedBlobs
from feedserver.api.zerocopy import ZEROCOPY
from feedserver.config import Settings, load_settings
from feedserver.errors import Unavailable
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.events.state_cache import RemoteDatabase, RemoteState, StateCache, follow
from feedserver.feeds.realtime.service import HEARTBEAT_SECONDS, Realtime
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.logs import REQUEST_ID, setup_logging
from feedserver.metering.records import NullSink, UsageSink
from feedserver.metering.service import Metering, open_metering
from feedserver.metrics import Metrics
from feedserver.storage.blobs import BlobStore, open_blob_store
from feedserver.storage.db import Database, connect
from feedserver.storage.eventlog import EventLog, open_event_log

# The route table, in the order the OpenAPI document lists them. CORS is one middleware around
# the whole app (``FeedApp``, ``settings.cors_allow_origins``), unknown paths included; the
# portal's pages (``CORS_EXCLUDED``) are left out.
ROUTERS: tuple[Callable[[], Router], ...] = (health.router, usage.router, portal.router)
WME_ROUTERS: tuple[Callable[[], Router], ...] = (
    auth.router, metadata.router, snapshots.router, ondemand.router, diffs.router,
    parquet.router, realtime.router, batches.router, structured.router,
    structured_snapshots.router, structured_parquet.router,
)
CORS_EXCLUDED = ("/usage",)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
M = TypeVar("M", bound=MetricWrapperBase)
log = logging.getLogger("feedserver.api")
access = logging.getLogger("feedserver.access")


class FeedApp(Litestar):
    """Litestar plus request metrics measured around EVERY request (404s and 405s included,
    which never reach route middleware; labels use the route template, never the raw path),
    and the services of the running app."""

    metrics: Metrics
    # ``labels(...)`` children of the request metrics, by metric and labels: the label sets
    # are closed (route templates, methods, statuses) and prometheus_client validates them
    # and takes a lock on every ``labels`` call (set by ``build_app``).
    children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any]
    running: Services | None = None
    # The app behind its CORS middleware (set by ``build_app``).
    cors: ASGIApp | None = None

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, memoised."""
        key = (metric, labels)
        found: M | None = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found

    @property
    def services(self) -> Services:
        """The components the lifespan opened; ``Unavailable`` outside the lifespan."""
        if self.running is None:
            raise Unavailable("the API is not started")
        return self.running

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
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        token = REQUEST_ID.set(rid)  # every log line of this request carries it

        def route() -> str:
            return str(scope.get("path_template") or "unmatched")

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.child(self.metrics.http_latency, route(), method).observe(
                    time.perf_counter() - start)
                # The correlation id stored with usage records: a client can quote it.
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"x-request-id", rid.encode()),
                                                  *state.get(LATER_HEADERS, ())]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                pieces = message.get(BODY_PARTS)  # the body as pieces (api/parts_stream.py)
                if isinstance(pieces, tuple):
                    sent += sum(len(piece) for piece in pieces)
            elif message["type"] == ZEROCOPY:  # a file piece sent with sendfile
                count = message.get("count")
                sent += count if isinstance(count, int) else 0
            await send(message)

        try:
            if self.cors is None:
                await super().__call__(scope, receive, send_wrapper)
            else:
                await self.cors(scope, receive, send_wrapper)
        finally:
            self.child(self.metrics.http_requests, route(), method, str(status)).inc()
            if sent:
                self.child(self.metrics.http_bytes, route()).inc(sent)
            if access.isEnabledFor(logging.INFO):
                access.info("%s %s %s", method, route(), status, extra={
                    "status": status, "bytes": sent,
                    "seconds": round(time.perf_counter() - start, 6)})
            REQUEST_ID.reset(token)


def build_app(settings: Settings, *, blobs: BlobStore | None = None, db: Database | None = None,
              events: EventLog | None = None, accounts: Accounts | None = None,
              snapshots: Snapshots | None = None, state: ArticleState | None = None,
              usage: UsageSink | None = None, metering: Metering | None = None,
              registry: CollectorRegistry | None = None,
              realtime_heartbeat: float = HEARTBEAT_SECONDS) -> FeedApp:
    """The API. Anything not handed in is opened in the lifespan from ``settings`` (and only
    what was opened here is closed here).

    ``usage`` is the per-response usage seam (``UsageSink``); with neither ``usage`` nor
    ``metering`` given and ``settings.metering_enabled``, a ``Metering`` is opened on the
    database and its sink and admission (rate limits, quotas) are used.
    """
    metrics = Metrics(registry)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            services = await _open(settings, stack, metrics=metrics, blobs=blobs, db=db,
                                   events=events, accounts=accounts, snapshots=snapshots,
                                   state=state, usage=usage, metering=metering,
                                   heartbeat=realtime_heartbeat)
            stack.callback(_end_streams_on_signals(services.realtime))
            feed_app.running = services
            try:
                yield
            finally:
                feed_app.running = None

    feed_app = FeedApp(
        route_handlers=[
            *(make() for make in ROUTERS),
            Router("/", route_handlers=[make() for make in WME_ROUTERS]),
        ],
        dependencies=_dependencies(lambda: feed_app.services),
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
    feed_app.metrics = metrics
    feed_app.children = {}
    feed_app.cors = cors_middleware(settings.cors_allow_origins, exclude=CORS_EXCLUDED)(
        functools.partial(Litestar.__call__, feed_app))
    return feed_app


def _dependencies(services: Callable[[], Services]) -> dict[str, Provide]:
    """One dependency per component, by the parameter name handlers use."""

    def provide_settings() -> Settings:
        return services().settings

    def provide_blobs() -> BlobStore:
        return services().blobs

    def provide_db() -> Database:
        return services().db

    def provide_events() -> EventLog:
        return services().events

    def provide_accounts() -> Accounts:
        return services().accounts

    def provide_snapshots() -> Snapshots:
        return services().snapshots

    def provide_diffs() -> DiffStore:
        return services().diffs

    def provide_structured_snapshots() -> Snapshots:
        return services().structured_snapshots

    def provide_state() -> ArticleState:
        return services().state

    def provide_billing() -> Billing:
        return services().billing

    def provide_metered() -> Metered:
        return services().metered

    def provide_metering() -> Metering | None:
        return services().metering

    def provide_realtime() -> Realtime:
        return services().realtime

    def provide_stream_metering() -> StreamMetering:
        return services().stream_metering

    def provide_portals() -> Portals:
        return services().portals

    def provide_metrics() -> Metrics:
        return services().metrics

    def provide_verified_blobs() -> VerifiedBlobs:
        return services().verified_blobs

    def provide_lookups() -> Lookups:
        return services().lookups

    providers: dict[str, Callable[[], object]] = {
        "settings": provide_settings, "blobs": provide_blobs, "db": provide_db,
        "events": provide_events, "accounts": provide_accounts,
        "snapshots": provide_snapshots, "diffs": provide_diffs,
        "structured_snapshots": provide_structured_snapshots,
        "article_state": provide_state,
        "billing": provide_billing, "metered": provide_metered,
        "metering": provide_metering, "realtime": provide_realtime,
        "stream_metering": provide_stream_metering, "portals": provide_portals,
        "metrics": provide_metrics, "verified_blobs": provide_verified_blobs,
        "lookups": provide_lookups,
    }
    return {name: Provide(fn, sync_to_thread=False) for name, fn in providers.items()}


async def _open(settings: Settings, stack: AsyncExitStack, *, metrics: Metrics,
                blobs: BlobStore | None, db: Database | None, events: EventLog | None,
                accounts: Accounts | None, snapshots: Snapshots | None, state: ArticleState | None,
                usage: UsageSink | None, metering: Metering | None, heartbeat: float) -> Services:
    """Open (in worker threads: they do blocking I/O) what was not handed in."""
    if blobs is None:
        blobs = await anyio.to_thread.run_sync(open_blob_store, settings)
    if db is None:
        db = await anyio.to_thread.run_sync(connect, settings.database)
        stack.callback(db.close)
    if events is None:
        events = await anyio.to_thread.run_sync(open_event_log, settings, db)
        stack.push_async_callback(events.close)
    if accounts is None:
        accounts = await anyio.to_thread.run_sync(AccountsService, db, settings)
    if state is None:
        state = await anyio.to_thread.run_sync(StateStore, db)
    if metering is None and usage is None and settings.metering_enabled:
        metering = await anyio.to_thread.run_sync(open_metering, settings, db, events)
    if metering is not None:
        await metering.start()
        stack.push_async_callback(metering.stop)
        usage = usage or metering.sink
    realtime = Realtime(events, settings.article_topic, partitions=settings.article_partitions,
                        max_lag=settings.realtime_max_subscriber_lag,
                        buffer_bytes=settings.realtime_buffer_bytes, heartbeat=heartbeat)
    stack.push_async_callback(realtime.close)
    stream_metering = StreamMetering(db, settings)
    stack.push_async_callback(stream_metering.close)
    billing = Billing(usage or NullSink(), metering)
    return Services(
        settings=settings, blobs=blobs, db=db, events=events, accounts=accounts,
        snapshots=snapshots or SnapshotStore(blobs), diffs=DiffStore(blobs), state=state,
        structured_snapshots=SnapshotStore(blobs, STRUCTURED_PREFIX),
        billing=billing, metered=Metered(billing, blobs, settings), metering=metering,
        realtime=realtime,
        stream_metering=stream_metering,
        portals=Portals(settings, db, accounts, metering), metrics=metrics,
        verified_blobs=VerifiedBlobs(blobs),
        lookups=Lookups(accounts=accounts, state=state, billing=billing,
                        remote=await _remote_state(settings, db, stack)))


async def _remote_state(settings: Settings, db: Database, stack: AsyncExitStack
                        ) -> RemoteState | None:
    """On PostgreSQL, on-demand's reads on the event loop and their per-process cache, kept
    in step by a listener task (unless ``ondemand_cache_bytes`` is 0) until the app stops;
    None where reads are local (SQLite)."""
    if db.local_reads or not isinstance(db, RemoteDatabase):
        return None
    reads = await stack.enter_async_context(db.async_reads())
    cache = StateCache(settings.ondemand_cache_bytes, settings.ondemand_cache_seconds)
    if settings.ondemand_cache_bytes > 0:
        task = asyncio.get_running_loop().create_task(follow(cache, db))

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(stop)
    return RemoteState(cache, reads)


def _end_streams_on_signals(service: Realtime) -> Callable[[], None]:
    """Chain SIGTERM/SIGINT (the server's handlers stay in charge): end every stream with its
    final position first, so the server's graceful shutdown finds them finished. Only in the
    main thread and only where a server installed handlers; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(service.end_streams)
        prev = previous.get(signum)
        if callable(prev):
            prev(signum, frame)

    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if callable(prev):  # only when a server installed one (else keep the default)
            previous[sig] = prev
            signal.signal(sig, handler)

    def restore() -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, prev in previous.items():
                if signal.getsignal(sig) is handler:
                    signal.signal(sig, prev)

    return restore


def openapi_document(app: Litestar | None = None) -> dict[str, Any]:
    """The OpenAPI document of the app (for ``schemas/openapi.json``)."""
    app = app or build_app(Settings(), registry=CollectorRegistry())
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


def app_from_env() -> Litestar:
    """uvicorn factory (``feedserver serve``): settings from the environment."""
    keep_freed_memory()  # relayed blocks (S3 reads) reuse freed memory: api/malloc_tuning.py
    settings = load_settings()
    setup_logging(settings)  # each uvicorn worker is a fresh process
    return build_app(settings)
