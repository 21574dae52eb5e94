"""What the handlers are handed: the long-lived components, typed, and the billing seam.

``Services`` is built once per app in the lifespan (``feedserver.api.app``) and reaches the
handlers through litestar dependency injection, one dependency per component (a handler
names the ones it uses as parameters: ``snapshots: Snapshots``, ``billing: Billing``...);
there are no module globals. The protocols describe only what the HTTP layer calls, so a
test may hand in a small fake that implements them.

The seam that matters for billing is ``Billing``, used by every metered handler:

* ``admit(...)`` before serving (rate limit + quotas; headers for the response), and
* ``report(...)``: the ONE place each response's usage (principal, feed, project, bytes sent,
  articles) is handed to the ``UsageSink``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeAlias, TypeVar

from litestar import Request
from litestar.di import Dependency
from litestar.params import SkipValidationMarker

from feedserver.accounts.models import Principal, TokenPair
from feedserver.api.realtime_metering import StreamMetering
from feedserver.config import Settings
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.realtime.service import Realtime
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.metering.records import UsageSink, new_response_id
from feedserver.metering.service import Metering
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.plans import Feed
from feedserver.storage.blobs import BlobStore
from feedserver.storage.db import Database
from feedserver.storage.eventlog import EventLog

if TYPE_CHECKING:  # the portal's pages import this module
    from feedserver.api.portal.context import Portals

T = TypeVar("T")

# A handler parameter filled by the dependency of the same name (``build_app`` provides one
# per component). Not validated per request: the providers are typed (mypy checks them), and
# an isinstance check of a protocol costs tens of microseconds on every request.
Injected: TypeAlias = Annotated[T, Dependency(kind="named"), SkipValidationMarker()]


class Accounts(Protocol):
    """Who is calling (``feedserver.accounts.service.Accounts`` fits). Every method is
    synchronous and does blocking I/O: handlers call it in a worker thread."""

    def login(self, username: str, password: str, *, client: str | None = None) -> TokenPair:
        """Tokens for a right password; ``client`` is the caller's address (throttling).
        Raises ``Unauthorized`` (wrong password), ``Forbidden`` (disabled), ``RateLimited``
        (throttled)."""

    def refresh(self, username: str, refresh_token: str) -> TokenPair:
        """Raises ``Unauthorized``, ``Forbidden``, ``RateLimited`` (refresh limit)."""

    def revoke(self, refresh_token: str) -> None:
        """Raises ``Unauthorized`` (unknown token)."""

    def cached_principal(self, kind: Literal["bearer", "api_key"], secret: str
                         ) -> Principal | None:
        """Without I/O (called on the event loop): the principal when memory alone decides,
        else None (then ``authenticate_*`` in a worker thread). Raises ``Unauthorized``."""

    def authenticate_bearer(self, token: str) -> Principal:
        """An access token or an API key. Raises ``Unauthorized``, ``Forbidden``."""

    def authenticate_api_key(self, key: str) -> Principal:
        """Raises ``Unauthorized``, ``Forbidden``."""


class Snapshots(Protocol):
    """Published snapshots (``feeds.snapshots.store.SnapshotStore`` fits); synchronous."""

    def identifiers(self) -> list[str]: ...
    def versions(self, identifier: str) -> list[int]: ...
    def manifest(self, identifier: str, version: int | None = None) -> Manifest: ...


class ArticleState(Protocol):
    """The latest revision of every page (``feeds.events.state.StateStore`` fits).
    ``local_reads``: its reads never wait on a writer or the network (SQLite), so a handler
    may call them on the event loop rather than pay a worker-thread hop."""

    @property
    def local_reads(self) -> bool: ...

    def find_by_name(self, name: str, projects: Sequence[str] | None = None, *,
                     limit: int = 100) -> list[Article]: ...


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_request_id(given: str) -> str:
    """The caller's ``X-Request-Id`` when sane, else a fresh UUID: a CORRELATION id only
    (echoed and stored with usage), never a billing or dedup key (see ``response_id``)."""
    return given if _REQUEST_ID.match(given) else str(uuid.uuid4())


def request_id(request: Request[Any, Any, Any]) -> str:
    """The request's correlation id (``new_request_id``), memoised on the request's state;
    the app assigns it before routing so it can also be sent back as ``X-Request-Id``."""
    state = request.scope.setdefault("state", {})  # the dict itself: ``request.state`` wraps it
    rid: str | None = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = new_request_id(request.headers.get("x-request-id", ""))
    return rid


def response_id(request: Request[Any, Any, Any]) -> str:
    """The server's own id of this response (memoised): what usage ids derive from."""
    state = request.scope.setdefault("state", {})
    sid: str | None = state.get("response_id")
    if sid is None:
        sid = state["response_id"] = new_response_id()
    return sid


class Billing:
    """Admission before serving and the usage report after it."""

    def __init__(self, usage: UsageSink, metering: Metering | None = None) -> None:
        self.usage = usage
        self.metering = metering

    async def admit(self, principal: Principal, feed: Feed, project: str | None = None, *,
                    resource: str | None = None, download: bool = False) -> dict[str, str]:
        """Rate limit and quota check before serving; returns the RateLimit headers.
        Raises ``RateLimited``, ``QuotaExceeded``."""
        if self.metering is None:
            return {}
        admission = await self.metering.admit(principal, feed, project, resource=resource,
                                              download=download)
        return admission.headers

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


@dataclass(frozen=True)
class Services:
    """Every component a running app serves with (opened or handed in by ``build_app``)."""

    settings: Settings
    blobs: BlobStore
    db: Database
    events: EventLog
    accounts: Accounts
    snapshots: Snapshots
    diffs: DiffStore
    state: ArticleState
    billing: Billing
    metering: Metering | None
    realtime: Realtime
    stream_metering: StreamMetering
    portals: Portals
    metrics: Metrics
