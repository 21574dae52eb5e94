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

import itertools
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request

from feedserver.accounts.models import Principal
from feedserver.api.portal.context import Portals
from feedserver.api.protocols import Accounts, ArticleState, Snapshots
from feedserver.api.realtime_metering import StreamMetering
from feedserver.api.verified import VerifiedBlobs
from feedserver.config import Settings
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.events.state_cache import RemoteState
from feedserver.feeds.realtime.service import Realtime
from feedserver.metering.admission_terms import Field, header_dict
from feedserver.metering.records import UsageSink, new_response_id
from feedserver.metering.service import Metering
from feedserver.metrics import Metrics

if TYPE_CHECKING:  # metered.py builds on Billing below: a type only, no import cycle
    from feedserver.api.metered import Metered
from feedserver.plans import Feed
from feedserver.storage.blobs import BlobStore
from feedserver.storage.db import Database
from feedserver.storage.eventlog import EventLog

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_request_id(given: str) -> str:
    """The caller's ``X-Request-Id`` when sane, else a fresh UUID: a CORRELATION id only
    (echoed and stored with usage), never a billing or dedup key (see ``response_id``).

    A fresh one is 90 random bits drawn once per process and a counter, in UUID version 4
    layout: ``uuid4()`` reads ``os.urandom`` per request, a system call that hands the GIL
    to any waiting thread (measured at ~160 microseconds of event-loop stall per request on
    a busy server). A correlation id needs uniqueness, not secrecy."""
    if _REQUEST_ID.match(given):
        return given
    return f"{_REQUEST_PREFIX}{next(_REQUESTS) & 0xFFFFFFFF:08x}"


# The id's text but its last 8 hex digits (the counter's 32 bits): formatting that part alone
# gives the text ``str(uuid.UUID(int=prefix | n, version=4))`` gives, without a UUID object.
_REQUEST_PREFIX = str(uuid.UUID(int=secrets.randbits(96) << 32, version=4))[:-8]
_REQUESTS = itertools.count(1)


def request_id(request: Request[Any, Any, Any]) -> str:
    """The request's correlation id (``new_request_id``), memoised on the request's state;
    the app assigns it before routing so it can also be sent back as ``X-Request-Id``."""
    state = request.scope.setdefault("state", {})  # the dict itself: ``request.state`` wraps it
    rid: str | None = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = new_request_id(request.headers.get("x-request-id", ""))
    return rid


# Where a handler leaves header fields for the app to send with its response's start
# (``FeedApp.__call__`` appends them): litestar's response headers cost more per header
# (each added, lower-cased and searched again for its content type and length).
LATER_HEADERS = "feedserver.later_headers"


def send_later(request: Request[Any, Any, Any], fields: Sequence[Field]) -> None:
    """Send ``fields`` (the ``RateLimit`` header fields of a metered answer, made as bytes by
    admission) with the response, as they are."""
    if fields:
        request.scope.setdefault("state", {})[LATER_HEADERS] = fields


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
        # admission is the admitter's, called directly (one coroutine less per request);
        # none when metering is off, as ``Metering.admit`` answers then
        self._admitter = (metering.admitter if metering is not None and metering.enabled
                          else None)

    async def admit(self, principal: Principal, feed: Feed, project: str | None = None, *,
                    resource: str | None = None, download: bool = False) -> dict[str, str]:
        """Rate limit and quota check before serving; returns the RateLimit headers.
        Raises ``RateLimited``, ``QuotaExceeded``."""
        fields = await self.admit_fields(principal, feed, project, resource=resource,
                                         download=download)
        return header_dict(fields) if fields else {}

    def at_once(self, principal: Principal, feed: Feed) -> list[Field] | None:
        """The fields ``admit_fields`` gives a request that consumes no quota, when the
        admitter decides it from memory (no coroutine: this runs per metadata answer); None:
        await ``admit_fields``."""
        if self._admitter is None:
            return []
        return self._admitter.at_once(principal, feed)

    async def admit_fields(self, principal: Principal, feed: Feed, project: str | None = None,
                           *, resource: str | None = None, download: bool = False
                           ) -> list[Field]:
        """``admit``, its headers as the fields the app sends (``send_later``)."""
        if self._admitter is None:
            return []
        admission = await self._admitter.admit(principal, feed, project, resource=resource,
                                               download=download)
        return admission.fields

    def report(self, request: Request[Any, Any, Any], principal: Principal, *, feed: Feed,
               project: str | None, bytes_sent: int = 0, articles: int = 0,
               resource: str | None = None, download: bool = False) -> None:
        """THE usage seam: every metered response ends here exactly once. Only the usage the
        response has is handed on: what is left out is its default (``Usage``), so a metadata
        answer's journal line carries no articles, resource or download keys."""
        # Two calls, not a dict filled and unpacked: keywords are cheaper (~0.2 us per call).
        if articles or resource is not None or download:
            self.usage.record(principal, feed=feed, project=project,
                              response_id=response_id(request), request_id=request_id(request),
                              bytes_sent=bytes_sent, articles=articles, resource=resource,
                              download=download)
        else:
            self.usage.record(principal, feed=feed, project=project,
                              response_id=response_id(request), request_id=request_id(request),
                              bytes_sent=bytes_sent)

    def progress(self, request: Request[Any, Any, Any], principal: Principal, *, feed: Feed,
                 project: str | None, bytes_sent: int = 0, resource: str | None = None,
                 download: bool = False) -> None:
        """A cumulative checkpoint of a response still streaming (journal only): a server
        killed mid-body is billed up to it; the final ``report`` supersedes it."""
        self.usage.progress(principal, feed=feed, project=project,
                            response_id=response_id(request), request_id=request_id(request),
                            bytes_sent=bytes_sent, resource=resource, download=download)


@dataclass(frozen=True)
class Lookups:
    """What an on-demand lookup is served with, handed in as ONE dependency: litestar resolves
    the dependencies of a handler that names several in an anyio task group, a task each,
    which cost more per lookup than the state-store read (docs/api.md, "Benchmark")."""

    accounts: Accounts
    state: ArticleState
    billing: Billing
    # The state store's reads on the event loop, cached, when it is remote (PostgreSQL).
    remote: RemoteState | None = None


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
    structured_snapshots: Snapshots  # Structured Contents versions
    billing: Billing
    metered: Metered  # billing around answers and downloads; built once, not per request
    metering: Metering | None
    realtime: Realtime
    stream_metering: StreamMetering
    portals: Portals
    metrics: Metrics
    verified_blobs: VerifiedBlobs  # files hashed before any byte is served (Parquet shards)
    lookups: Lookups  # accounts, state and billing together, for on-demand lookups
