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

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import anyio.to_thread
import msgspec

from feedserver.errors import RateLimited
from feedserver.metering.months import month_bounds, month_of
from feedserver.metering.quotas import QuotaCounters, quota_exceeded
from feedserver.metering.ratelimit import RateDecision, RateLimiter
from feedserver.metering.records import MeteredPrincipal, download_id
from feedserver.plans import Feed, Plan, QuotaName

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
        r = terms.rate_limit
        window = max(1, math.ceil(max(1, r.burst) / r.requests_per_second))
        policies.append(f'"{policy_name}";q={max(1, r.burst)};w={window}')
        limits.append(f'"{policy_name}";r={decision.remaining};t={math.ceil(decision.reset)}')
    if quota is not None:
        name, limit, remaining, window_s, reset = quota
        policies.append(f'"{name}";q={limit};w={int(window_s)}')
        limits.append(f'"{name}";r={max(0, remaining)};t={math.ceil(reset)}')
    if not policies:
        return {}
    return {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(limits)}


class Admitter:
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
        # Hop to a worker thread only when the database is really needed: a thread hop costs
        # more than everything else admission does.
        needs_db = (
            (terms.rate_limit.requests_per_second > 0 and self.limiter.shared)
            or (quota is not None
                and (quota == "ondemand_lookups" or (customer, month, dl) not in self._claimed))
            or (feed in BYTE_FEEDS and terms.quotas.bytes is not None
                and not self._bytes_fresh(customer, month, now_s))
        )
        args = (customer, feed, terms, quota, dl, now_s, now, month)
        if needs_db:
            return await anyio.to_thread.run_sync(self._admit, *args)
        return self._admit(*args)

    def _admit(
        self, customer: str, feed: Feed, terms: Plan, quota: QuotaName | None, dl: str,
        now_s: float, now: datetime, month: str,
    ) -> Admission:
        decision = None
        if terms.rate_limit.requests_per_second > 0:
            decision = self.limiter.hit(f"rate:{customer}", terms.rate_limit, now_s)
            if not decision.allowed:
                retry = max(1, math.ceil(decision.retry_after))
                raise RateLimited(
                    f"more than {terms.rate_limit.requests_per_second:g} requests per second "
                    f"(burst {terms.rate_limit.burst}); retry in {retry}s",
                    retry_after=retry,
                    headers=rate_headers("default", terms, decision, None),
                )
        if feed in BYTE_FEEDS and terms.quotas.bytes is not None:
            self._check_bytes(customer, month, terms.quotas.bytes, now, now_s)
        header_quota = None
        used = 0
        if quota is not None:
            limit = terms.quotas.limit(quota)
            used = self._consume(customer, month, quota, limit, now, dl)
            if limit is not None:
                start, end = month_bounds(month)
                header_quota = (
                    quota, limit, limit - used, (end - start).total_seconds(),
                    (end - now).total_seconds(),
                )
        return Admission(
            headers=rate_headers("default", terms, decision, header_quota),
            download_id=dl, quota=quota or "", quota_used=used,
        )

    def _consume(self, customer: str, month: str, quota: QuotaName, limit: int | None,
                 now: datetime, dl: str) -> int:
        if quota == "ondemand_lookups":
            return self.counters.consume(customer, month, quota, limit, now)
        # A download already claimed by this process (the other Range requests of it) is
        # counted; the database claim makes this exact across processes as well.
        key = (customer, month, dl)
        used = self._claimed.get(key)
        if used is None:
            used = self.counters.consume(customer, month, quota, limit, now, claim=dl)
            if len(self._claimed) >= _CLAIMS_KEPT:
                self._claimed.clear()
            self._claimed[key] = used
        return used

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
