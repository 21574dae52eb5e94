"""What the handlers get injected: the long-lived components, behind small protocols.

``Services`` is built once per app in the lifespan (``feedserver.api.app``) and reached through
``request.app.state.services``; there are no module globals. The protocols describe only what
the HTTP layer calls, so unit tests can hand in small fakes and the real components (accounts
service, ``SnapshotStore``, ``StateStore``, ``Metering``) fit structurally.

Two seams matter for billing and are used by every handler:

* ``admit(...)`` before serving (rate limit + quotas; ``None`` = metering off), and
* ``report(...)``: the ONE place each response's usage (principal, feed, project, bytes sent,
  articles) is handed to the ``UsageSink``.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio.to_thread
from litestar import Request

from feedserver.config import Settings
from feedserver.feeds.manifest import Manifest
from feedserver.metering.records import Feed, UsageSink, new_response_id
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.storage.blobs import BlobStore
from feedserver.storage.db import Database

T = TypeVar("T")


@runtime_checkable  # litestar validates injected dependencies with isinstance
class Principal(Protocol):
    """An authenticated caller (``feedserver.accounts`` ``Principal``)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def api_key_id(self) -> str | None: ...
    @property
    def plan(self) -> Any: ...


class Accounts(Protocol):
    def login(self, username: str, password: str, *, client: str | None = None) -> Any: ...
    def refresh(self, username: str, refresh_token: str) -> Any: ...
    def revoke(self, refresh_token: str) -> Any: ...
    def authenticate_bearer(self, token: str) -> Any: ...
    def authenticate_api_key(self, key: str) -> Any: ...


class Snapshots(Protocol):
    def identifiers(self) -> list[str]: ...
    def versions(self, identifier: str) -> list[int]: ...
    def manifest(self, identifier: str, version: int | None = None) -> Manifest: ...


class ArticleState(Protocol):
    def find_by_name(self, name: str, projects: Sequence[str] | None = None, *,
                     limit: int = 100) -> list[Article]: ...


Admit = Callable[..., Awaitable[Any]]


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a component method that may be sync (blocking I/O: in a worker thread) or async."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
    if inspect.isawaitable(result):
        return await result
    return result


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_request_id(given: str) -> str:
    """The caller's ``X-Request-Id`` when sane, else a fresh UUID: a CORRELATION id only
    (echoed and stored with usage), never a billing or dedup key (see ``response_id``)."""
    return given if _REQUEST_ID.match(given) else str(uuid.uuid4())


def request_id(request: Request[Any, Any, Any]) -> str:
    """The request's correlation id (``new_request_id``), memoised on the request's state;
    the app assigns it before routing so it can also be sent back as ``X-Request-Id``."""
    rid: str | None = request.state.get("request_id")
    if rid is None:
        rid = new_request_id(request.headers.get("x-request-id", ""))
        request.state["request_id"] = rid
    return rid


def response_id(request: Request[Any, Any, Any]) -> str:
    """The server's own id of this response (memoised): what usage ids derive from."""
    sid: str | None = request.state.get("response_id")
    if sid is None:
        sid = new_response_id()
        request.state["response_id"] = sid
    return sid


@dataclass
class Services:
    settings: Settings
    blobs: BlobStore
    db: Database | None
    accounts: Accounts | None
    snapshots: Snapshots
    state: ArticleState | None
    usage: UsageSink
    admitter: Admit | None
    metrics: Metrics
    counters: Any = None  # metering QuotaCounters (``used(customer, month, quota)``) or None
    metering: Any = None  # the ``Metering`` when the app runs one (usage reports read it)

    async def admit(self, principal: Principal, feed: Feed, project: str | None = None, *,
                    resource: str | None = None, download: bool = False) -> dict[str, str]:
        """Rate limit and quota check before serving; returns the RateLimit headers."""
        if self.admitter is None:
            return {}
        admission = await self.admitter(principal, feed, project, resource=resource,
                                        download=download)
        headers: dict[str, str] = dict(getattr(admission, "headers", None) or {})
        return headers

    def report(self, request: Request[Any, Any, Any], principal: Principal, *, feed: Feed,
               project: str | None, bytes_sent: int = 0, articles: int = 0,
               resource: str | None = None, download: bool = False) -> None:
        """THE usage seam: every metered response ends here exactly once."""
        self.usage.record(principal, feed=feed, project=project,
                          response_id=response_id(request), request_id=request_id(request),
                          bytes_sent=bytes_sent, articles=articles, resource=resource,
                          download=download)

    def progress(self, request: Request[Any, Any, Any], principal: Principal, *, feed: Feed,
                 project: str | None, bytes_sent: int = 0, resource: str | None = None,
                 download: bool = False) -> None:
        """A cumulative checkpoint of a response still streaming (journal only): a server
        killed mid-body is billed up to it; the final ``report`` supersedes it."""
        self.usage.progress(principal, feed=feed, project=project,
                            response_id=response_id(request), request_id=request_id(request),
                            bytes_sent=bytes_sent, resource=resource, download=download)


def services_of(request: Request[Any, Any, Any]) -> Services:
    svc: Services = request.app.state.services
    return svc

