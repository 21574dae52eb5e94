"""``admit()``: the one call the HTTP layer makes BEFORE serving a metered request.

It applies the plan's request rate limit, then the monthly quota the request consumes:

============  ===========================================================  ==================
feed          consumes                                                     only when
============  ===========================================================  ==================
snapshots     ``snapshot_downloads`` once per download id (customer,       ``download=True``
              resource, UTC day): parallel Range GETs count once
chunks        ``chunk_downloads``, idem                                    ``download=True``
ondemand      ``ondemand_lookups`` +1                                      always
============  ===========================================================  ==================

and refuses byte-serving feeds once the monthly ``bytes`` quota is reached. HEAD and metadata
requests pass ``download=False`` and are free (as in WME). The answer carries the
``RateLimit-Policy`` / ``RateLimit`` headers (draft-ietf-httpapi-ratelimit-headers); refusals
raise ``RateLimited`` / ``QuotaExceeded`` with ``retry_after`` (seconds), which the API maps to
429 + problem+json + ``Retry-After``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

import anyio.to_thread
import msgspec

from feedserver.errors import RateLimited
from feedserver.metering.months import month_bounds, month_of
from feedserver.metering.quota_leases import QuotaLeases
from feedserver.metering.quotas import QuotaCounters, quota_exceeded
from feedserver.metering.ratelimit import RateDecision, RateLimiter
from feedserver.metering.records import MeteredPrincipal, download_id
from feedserver.plans import Feed, Plan, QuotaName, RateLimit

BYTE_FEEDS: frozenset[str] = frozenset({"snapshots", "chunks", "diffs", "batches", "ondemand"})
_DOWNLOAD_QUOTA: dict[str, QuotaName] = {
    "snapshots": "snapshot_downloads", "chunks": "chunk_downloads"
}


_CLAIMS_KEPT = 100_000


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    download_id: str = ""
    quota: str = ""
    quota_used: int = 0


def rate_headers(
    policy_name: str, terms: Plan, decision: RateDecision | None,
    quota: tuple[str, int, int, float, float] | None,
) -> dict[str, str]:
    """``RateLimit-Policy`` / ``RateLimit`` items: the request rate and the consumed quota.

    ``quota`` is ``(name, limit, remaining, window_seconds, reset_seconds)``.
    """
    policies: list[str] = []
    limits: list[str] = []
    if decision is not None:
        policies.append(_rate_policy(policy_name, terms.rate_limit))
        limits.append(f'"{policy_name}";r={decision.remaining};t={math.ceil(decision.reset)}')
    if quota is not None:
        name, limit, remaining, window_s, reset = quota
        policies.append(f'"{name}";q={limit};w={int(window_s)}')
        limits.append(f'"{name}";r={max(0, remaining)};t={math.ceil(reset)}')
    if not policies:
        return {}
    return {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(limits)}


@functools.lru_cache(maxsize=256)
def _rate_policy(policy_name: str, r: RateLimit) -> str:
    """The ``RateLimit-Policy`` item of a plan's rate limit (the same for every request of it:
    memoised, admission runs on the event loop)."""
    window = max(1, math.ceil(max(1, r.burst) / r.requests_per_second))
    return f'"{policy_name}";q={max(1, r.burst)};w={window}'


class Admitter:
    """Admission decisions. Everything that can be decided from memory is decided on the
    event loop (rate limit from ``limiter.try_hit``, leased lookup units, claims this process
    made, a fresh bytes figure); the rest, in order, in ONE worker-thread hop."""

    def __init__(
        self,
        counters: QuotaCounters,
        limiter: RateLimiter,
        *,
        clock: Callable[[], float] = time.time,
        bytes_cache_seconds: float = 1.0,
    ) -> None:
        self.counters = counters
        self.limiter = limiter
        self.leases = QuotaLeases(counters)
        self.clock = clock
        self.bytes_cache_seconds = bytes_cache_seconds
        self._bytes_cache: dict[tuple[str, str], tuple[float, int]] = {}
        self._claimed: dict[tuple[str, str, str], int] = {}

    async def admit(
        self,
        principal: MeteredPrincipal,
        feed: Feed,
        project: str | None = None,
        *,
        resource: str | None = None,
        download: bool = False,
    ) -> Admission:
        del project  # entitlement to a project is accounts' check; metering is per customer
        terms = principal.plan
        quota: QuotaName | None = None
        if download and resource and feed in _DOWNLOAD_QUOTA:
            quota = _DOWNLOAD_QUOTA[feed]
        elif feed == "ondemand":
            quota = "ondemand_lookups"
        now_s = self.clock()
        now = datetime.fromtimestamp(now_s, UTC)
        month = month_of(now)
        customer = principal.customer_id
        dl = download_id(customer, resource, now) if resource else ""
        req = _Request(customer, feed, terms, quota, dl, now_s, now, month)
        # A thread hop costs more than everything else admission does (milliseconds on a
        # loaded machine): decide in memory when possible, hop once otherwise.
        decision = None
        if terms.rate_limit.requests_per_second > 0:
            decision = self.limiter.try_hit(f"rate:{customer}", terms.rate_limit, now_s)
            if decision is None:
                return await anyio.to_thread.run_sync(self._admit, req, None)
            _check_rate(terms, decision)
        if feed in BYTE_FEEDS and terms.quotas.bytes is not None:
            if not self._bytes_fresh(customer, month, now_s):
                return await anyio.to_thread.run_sync(self._admit, req, decision)
            self._check_bytes(customer, month, terms.quotas.bytes, now, now_s)
        used = self._try_consume(req)
        if quota is not None and used is None:
            return await anyio.to_thread.run_sync(self._admit, req, decision, True)
        return self._admit(req, decision, True, used)

    def _admit(self, req: _Request, decision: RateDecision | None, bytes_checked: bool = False,
               used: int | None = None) -> Admission:
        """The whole decision, in order, blocking on the database where needed; ``decision``,
        ``bytes_checked`` and ``used`` say what the event loop already did."""
        terms, customer, month = req.terms, req.customer, req.month
        if decision is None and terms.rate_limit.requests_per_second > 0:
            decision = self.limiter.hit(f"rate:{customer}", terms.rate_limit, req.now_s)
            _check_rate(terms, decision)
        if req.feed in BYTE_FEEDS and terms.quotas.bytes is not None and not bytes_checked:
            self._check_bytes(customer, month, terms.quotas.bytes, req.now, req.now_s)
        header_quota = None
        quota = req.quota
        if quota is not None:
            limit = terms.quotas.limit(quota)
            if used is None:
                used = self._consume(req, limit)
            if limit is not None:
                start, end = month_bounds(month)
                header_quota = (
                    quota, limit, limit - used, (end - start).total_seconds(),
                    (end - req.now).total_seconds(),
                )
        return Admission(
            headers=rate_headers("default", terms, decision, header_quota),
            download_id=req.dl, quota=quota or "", quota_used=used or 0,
        )

    def _try_consume(self, req: _Request) -> int | None:
        """The quota unit when memory decides it: a leased lookup unit, a download this
        process already claimed; else None."""
        if req.quota is None:
            return None
        if req.quota == "ondemand_lookups":
            return self.leases.try_spend(req.customer, req.month, req.quota)
        return self._claimed.get((req.customer, req.month, req.dl))

    def _consume(self, req: _Request, limit: int | None) -> int:
        assert req.quota is not None
        if req.quota == "ondemand_lookups":
            return self.leases.spend(req.customer, req.month, req.quota, limit, req.now)
        # A download already claimed by this process (the other Range requests of it) is
        # counted; the database claim makes this exact across processes as well.
        key = (req.customer, req.month, req.dl)
        used = self._claimed.get(key)
        if used is None:
            used = self.counters.consume(req.customer, req.month, req.quota, limit, req.now,
                                         claim=req.dl)
            if len(self._claimed) >= _CLAIMS_KEPT:
                self._claimed.clear()
            self._claimed[key] = used
        return used

    def release(self) -> int:
        """Give back the lookup units leased and not spent (blocks; the server stopping)."""
        return self.leases.give_back()

    def _bytes_fresh(self, customer: str, month: str, now_s: float) -> bool:
        cached = self._bytes_cache.get((customer, month))
        return cached is not None and now_s - cached[0] <= self.bytes_cache_seconds

    def _check_bytes(
        self, customer: str, month: str, limit: int, now: datetime, now_s: float
    ) -> None:
        # bytes grow after delivery (via the ledger); a short per-process cache keeps this
        # read off the hot path; overshoot is bounded by what is served within that window
        key = (customer, month)
        cached = self._bytes_cache.get(key)
        if cached is None or not self._bytes_fresh(customer, month, now_s):
            cached = (now_s, self.counters.used(customer, month, "bytes"))
            self._bytes_cache[key] = cached
        if cached[1] >= limit:
            raise quota_exceeded("bytes", limit, now)


class _Request(NamedTuple):
    customer: str
    feed: Feed
    terms: Plan
    quota: QuotaName | None
    dl: str
    now_s: float
    now: datetime
    month: str


def _check_rate(terms: Plan, decision: RateDecision) -> None:
    if not decision.allowed:
        retry = max(1, math.ceil(decision.retry_after))
        raise RateLimited(
            f"more than {terms.rate_limit.requests_per_second:g} requests per second "
            f"(burst {terms.rate_limit.burst}); retry in {retry}s",
            retry_after=retry,
            headers=rate_headers("default", terms, decision, None),
        )
