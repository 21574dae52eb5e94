"""Usage records and the seam the HTTP and realtime layers report through.

A ``UsageRecord`` is one metered quantity (bytes, articles, requests, stream seconds, stream
events or a download) for one customer. Its ``usage_id`` is the idempotency key: every stage
(journal replay, ledger insert, Kafka consumer) drops a record whose id it has already seen, so
replays and redeliveries never double-count.

Every id is derived from what the SERVER assigns, never from the client alone: a response's
records are ``uuid5("response", customer, api key, response_id, meter)`` where ``response_id``
is a fresh server-generated id per response (the client's ``X-Request-Id`` is only stored, as
``request_id``, for correlation); a *download* is ``uuid5(customer, resource, day)`` so the
parallel Range requests of one snapshot version on one UTC day count as ONE download.
Duplicates are dropped by the ledger inside the transaction that writes the rows.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal, Protocol, Required, TypedDict, Unpack

import msgspec

from feedserver.plans import Feed, Plan

Meter = Literal["bytes", "articles", "requests", "stream_seconds", "stream_events", "downloads"]
METERS: tuple[Meter, ...] = (
    "bytes", "articles", "requests", "stream_seconds", "stream_events", "downloads"
)

# Fixed namespace so every process derives the same ids from the same inputs.
_NAMESPACE = uuid.UUID("5b0f3c3e-8a57-4c41-9a3c-6f1f0b2d9e11")
_NS_BYTES = _NAMESPACE.bytes


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    usage_id: str
    ts: datetime
    customer_id: str
    meter: Meter
    quantity: int
    feed: Feed
    api_key_id: str = ""
    user: str = ""
    project: str = ""
    request_id: str = ""
    resource: str = ""
    download_id: str = ""


class MeteredPrincipal(Protocol):
    """What metering needs from ``feedserver.accounts`` ``Principal`` (structural): who to
    count against, with which key or user, and the plan whose terms apply."""

    @property
    def customer_id(self) -> str: ...

    @property
    def api_key_id(self) -> str | None: ...

    @property
    def user(self) -> str | None: ...

    @property
    def plan(self) -> Plan: ...


def merge(records: Iterable[UsageRecord]) -> list[UsageRecord]:
    """One record per usage id, the largest quantity winning (first-seen order kept): a
    streaming body's checkpoints are cumulative, and replays of the same record are equal."""
    best: dict[str, UsageRecord] = {}
    for rec in records:
        seen = best.get(rec.usage_id)
        if seen is None or rec.quantity > seen.quantity:
            best[rec.usage_id] = rec
    return list(best.values())


def utcnow() -> datetime:
    return datetime.now(UTC)


def derive_id(*parts: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, "\\x1f".join(parts)))``, without building UUID objects
    (this runs several times per response)."""
    return _uuid5_text(hashlib.sha1(_NS_BYTES + "\x1f".join(parts).encode()))  # noqa: S324


def _uuid5_text(hasher: hashlib._Hash) -> str:
    """The RFC 4122 text of a name-based (version 5) UUID from its SHA-1: version nibble 5,
    variant bits 10 (the high two bits of character 16)."""
    h = hasher.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def download_id(customer_id: str, resource: str, when: datetime) -> str:
    """One download per customer, resource (snapshot id + version) and UTC day."""
    day = when.astimezone(UTC).date().isoformat()
    return derive_id("download", customer_id, resource, day)


def response_usage_id(customer_id: str, api_key_id: str, response_id: str, meter: str) -> str:
    """The usage id of one meter of one response: scoped by customer and key, keyed by the
    server's own response id (``new_response_id``), so no client input can collide it."""
    return derive_id("response", customer_id, api_key_id, response_id, meter)


def new_response_id() -> str:
    """A fresh server-side id for one response or stream: 128 bits, unique across processes
    and restarts (96 random bits drawn once per process, then a counter: this runs for
    every response, and a system call per id costs more than the rest of it)."""
    return f"{_PROCESS_PREFIX}{next(_RESPONSES):08x}"


_PROCESS_PREFIX = secrets.token_hex(12)
_RESPONSES = itertools.count(1)


class Usage(TypedDict, total=False):
    """What one response (or stream, so far) delivered: the keyword arguments of
    ``UsageSink.record`` / ``progress`` and ``response_records``."""

    feed: Required[Feed]
    project: Required[str | None]
    response_id: Required[str]  # server-assigned, unique per response or stream
    request_id: str  # the client's X-Request-Id (correlation only, never a key)
    bytes_sent: int
    articles: int
    resource: str | None
    download: bool
    stream_seconds: int
    stream_events: int


def response_records(
    principal: MeteredPrincipal, *, ts: datetime | None = None, **usage: Unpack[Usage],
) -> list[UsageRecord]:
    """The records one response produces: always ``requests``; others when non-zero.

    ``download=True`` (a GET of a snapshot/chunk body) adds a ``downloads`` record whose id is
    the download id, so all parallel Range requests of that resource that day collapse to one.
    """
    ts = ts or utcnow()
    response_id, resource = usage["response_id"], usage.get("resource") or ""
    if not response_id:
        raise ValueError("usage needs the server-assigned response id")
    customer, key = principal.customer_id, principal.api_key_id or ""
    dl = download_id(customer, resource, ts) if usage.get("download") and resource else ""
    feed, project = usage["feed"], usage["project"] or ""
    user, request = principal.user or "", usage.get("request_id") or response_id
    # ``response_usage_id`` for each meter: the common prefix hashed once (this runs per
    # response, on the event loop).
    prefix = hashlib.sha1(  # noqa: S324
        _NS_BYTES + f"response\x1f{customer}\x1f{key}\x1f{response_id}\x1f".encode())
    out = []
    quantities: tuple[tuple[Meter, int], ...] = (
        ("requests", 1), ("bytes", usage.get("bytes_sent", 0)),
        ("articles", usage.get("articles", 0)), ("stream_seconds", usage.get("stream_seconds", 0)),
        ("stream_events", usage.get("stream_events", 0)),
    )
    for meter, quantity in quantities:
        if quantity:
            h = prefix.copy()
            h.update(meter.encode())
            out.append(UsageRecord(
                usage_id=_uuid5_text(h), ts=ts, customer_id=customer, meter=meter,
                quantity=quantity, feed=feed, api_key_id=key, user=user, project=project,
                request_id=request, resource=resource, download_id=dl))
    if dl:
        out.append(UsageRecord(
            usage_id=dl, ts=ts, customer_id=customer, meter="downloads", quantity=1, feed=feed,
            api_key_id=key, user=user, project=project, request_id=request, resource=resource,
            download_id=dl))
    return out


class UsageSink(Protocol):
    """Where the HTTP layer (per response) and the realtime layer (per stream) report usage.

    ``record`` must be cheap and must not block: the implementation appends to the local
    journal with one ``write`` (so a ``kill -9`` right after cannot lose it) and queues the
    records for the single ledger writer. ``bytes_sent`` is what was actually delivered (the
    API counts the body bytes it hands to the server).
    """

    def record(self, principal: MeteredPrincipal, **usage: Unpack[Usage]) -> None: ...

    def progress(self, principal: MeteredPrincipal, **usage: Unpack[Usage]) -> None:
        """Checkpoint of a response still streaming: the same arguments as ``record``, all
        cumulative so far. Only the journal sees it, so a crash mid-stream is replayed as the
        last checkpoint; the final ``record`` of the same ``response_id`` supersedes it."""




class NullSink:
    """Metering disabled: drops everything (``settings.metering_enabled = False``)."""

    def record(self, principal: MeteredPrincipal, **_: object) -> None:
        del principal

    def progress(self, principal: MeteredPrincipal, **_: object) -> None:
        del principal
