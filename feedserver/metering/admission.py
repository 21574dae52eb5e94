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

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

import anyio.to_thread
import msgspec

from feedserver.errors import RateLimited
from feedserver.metering.admission_terms import (
    CLAIMS_KEPT,
    LIMIT,
    Field,
    Terms,
    header_dict,
    rate_limit_fields,
)
from feedserver.metering.quota_leases import QuotaLeases
from feedserver.metering.quotas import QuotaCounters, quota_exceeded
from feedserver.metering.ratelimit import RateDecision, RateLimiter
from feedserver.metering.records import MeteredPrincipal, download_id
from feedserver.plans import Feed, QuotaName

BYTE_FEEDS: frozenset[str] = frozenset({"snapshots", "chunks", "diffs", "batches", "ondemand"})
_DOWNLOAD_QUOTA: dict[str, QuotaName] = {
    "snapshots": "snapshot_downloads", "chunks": "chunk_downloads"
}


_TERMS_KEPT = 100_000  # customers whose terms are kept (then all made afresh)


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """An admitted request: its ``RateLimit`` header fields (encoded, as sent), the download
    id its quota claim is booked under, and the quota's use after it."""

    fields: list[Field] = msgspec.field(default_factory=list)
    download_id: str = ""
    quota: str = ""
    quota_used: int = 0

    @property
    def headers(self) -> dict[str, str]:
        """The fields by header name (``RateLimit-Policy``, ``RateLimit``)."""
        return header_dict(self.fields)


class Admitter:
    """Admission decisions. Everything that can be decided from memory is decided on the
    event loop (rate limit from ``limiter.try_hit``, leased lookup units, claims this process
    made, a fresh bytes figure), from the customer's precomputed ``Terms``; the rest, in
    order, in ONE worker-thread hop."""

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
        self._terms: dict[str, Terms] = {}
        # Database steps a request is taking in a worker thread (a rate-limit lease, lookup
        # units, a download's claim): the requests that need the same step meanwhile wait for
        # it and spend what it took, instead of each hopping to a thread and queueing on the
        # step's lock there.
        self._stepping: dict[str, asyncio.Event] = {}

    def terms(self, principal: MeteredPrincipal, now_s: float) -> Terms:
        """The customer's ``Terms`` for its plan at ``now_s`` (made once per plan and day)."""
        customer = principal.customer_id
        terms = self._terms.get(customer)
        if terms is None or not terms.current(principal.plan, now_s):
            if len(self._terms) >= _TERMS_KEPT:
                self._terms.clear()
            terms = self._terms[customer] = Terms(customer, principal.plan, now_s)
        return terms

    def forget_bytes(self) -> None:
        """Read the ``bytes`` counter afresh at the next request (tests)."""
        for terms in self._terms.values():
            terms.bytes_at = -math.inf

    def at_once(self, principal: MeteredPrincipal, feed: Feed) -> list[Field] | None:
        """``admit``'s common case, for a request that consumes no quota, answered without a
        coroutine when memory holds all of it: the customer's current terms, a leased token,
        a fresh bytes figure under its limit. The same header fields as ``admit`` (a test
        pins it); None when anything more is needed (``admit`` then decides: waits, hops,
        refusals)."""
        now_s = self.clock()
        terms = self._terms.get(principal.customer_id)
        if terms is None or principal.plan is not terms.plan \
                or not terms.day_start <= now_s < terms.day_end or feed == "ondemand":
            return None
        if terms.bytes_limit is not None and feed in BYTE_FEEDS and (
                now_s - terms.bytes_at > self.bytes_cache_seconds
                or terms.bytes_used >= terms.bytes_limit):
            return None
        if terms.rate is None:
            return []
        spent = self.limiter.spend(terms.bucket, now_s)
        if spent is None:
            return None
        return [terms.policies[None],
                (LIMIT, b'"default";r=%d;t=%d' % (spent[0], math.ceil(spent[1])))]

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
        now_s = self.clock()
        customer = principal.customer_id
        terms = self._terms.get(customer)
        if terms is None or principal.plan is not terms.plan \
                or not terms.day_start <= now_s < terms.day_end:
            terms = self.terms(principal, now_s)
        quota: QuotaName | None = None
        if feed == "ondemand":
            quota = "ondemand_lookups"
        elif download and resource and feed in _DOWNLOAD_QUOTA:
            quota = _DOWNLOAD_QUOTA[feed]
        # A thread hop costs more than everything else admission does (milliseconds on a
        # loaded machine): decide in memory when possible, hop once otherwise.
        decision = None
        if terms.rate is not None:
            decision = self.limiter.try_hit(terms.bucket, terms.rate, now_s)
            if decision is None:
                stepping = self._stepping.get(terms.bucket)
                if stepping is not None:
                    await stepping.wait()
                    decision = self.limiter.try_hit(terms.bucket, terms.rate, now_s)
            if decision is None:
                return await self._hop(
                    terms.bucket, _Request(customer, feed, terms, quota, resource or "", now_s),
                    None, False)
            if not decision.allowed:
                raise _rate_limited(terms, decision)
        if terms.bytes_limit is not None and feed in BYTE_FEEDS:
            if now_s - terms.bytes_at > self.bytes_cache_seconds:
                # The bytes figure is read afresh by one request; those arriving meanwhile
                # wait for it and decide here, instead of each hopping to read it again.
                step = f"bytes:{customer}"
                stepping = self._stepping.get(step)
                if stepping is not None:
                    await stepping.wait()
                if now_s - terms.bytes_at > self.bytes_cache_seconds:
                    return await self._hop(
                        step, _Request(customer, feed, terms, quota, resource or "", now_s),
                        decision, False)
            if terms.bytes_used >= terms.bytes_limit:
                raise quota_exceeded("bytes", terms.bytes_limit, _utc(now_s))
        if quota is None:
            # the common case, answered here: a request that consumes no quota
            if decision is None:
                return Admission()
            return Admission(fields=[terms.policies[None], (LIMIT, b'"default";r=%d;t=%d' % (
                decision.remaining, math.ceil(decision.reset)))])
        used, dl = self._held(customer, terms, quota, resource or "")
        if used is None:
            # Lookup units (or this download's claim) are counted in the database: one request
            # does it; those arriving meanwhile wait for it and spend what it counted.
            step = (f"{quota}:{customer}" if quota == "ondemand_lookups"  # per customer
                    else f"{quota}:{customer}:{resource}")  # per download
            stepping = self._stepping.get(step)
            if stepping is not None:
                await stepping.wait()
                used, dl = self._held(customer, terms, quota, resource or "")
            if used is None:
                return await self._hop(
                    step, _Request(customer, feed, terms, quota, resource or "", now_s),
                    decision, True)
        return _answer(terms, quota, decision, used, now_s, dl)

    def _held(self, customer: str, terms: Terms, quota: QuotaName, resource: str
              ) -> tuple[int | None, str]:
        """The quota's use after this request's unit and the download id, from what this
        process holds (a leased lookup unit, a download it claimed); None when it holds none."""
        if quota == "ondemand_lookups":
            return self.leases.try_spend(customer, terms.month, quota), ""
        claim = terms.claims.get(resource)
        return (None, "") if claim is None else claim

    async def _hop(self, step: str, req: _Request, decision: RateDecision | None,
                   bytes_checked: bool) -> Admission:
        """The whole decision in a worker thread, where it takes ``step`` in the database (a
        step of the rate-limit bucket, a lease of lookup units, a download's claim): the
        other requests needing the same step meanwhile wait for this one (``_stepping``)
        unless one is under way already."""
        if step in self._stepping:  # its step did not hold enough for this request
            return await anyio.to_thread.run_sync(self._admit, req, decision, bytes_checked)
        done = self._stepping[step] = asyncio.Event()
        try:
            return await anyio.to_thread.run_sync(self._admit, req, decision, bytes_checked)
        finally:
            del self._stepping[step]
            done.set()

    def _admit(self, req: _Request, decision: RateDecision | None, bytes_checked: bool = False
               ) -> Admission:
        """The whole decision, in order, blocking on the database where needed; ``decision``
        and ``bytes_checked`` say what the event loop already did."""
        terms = req.terms
        if decision is None and terms.rate is not None:
            decision = self.limiter.hit(terms.bucket, terms.rate, req.now_s)
            if not decision.allowed:
                raise _rate_limited(terms, decision)
        if terms.bytes_limit is not None and req.feed in BYTE_FEEDS and not bytes_checked:
            self._check_bytes(req.customer, terms, req.now_s)
        if req.quota is None:
            return _answer(terms, None, decision, None, req.now_s, "")
        used, dl = self._consume(req)
        return _answer(terms, req.quota, decision, used, req.now_s, dl)

    def _consume(self, req: _Request) -> tuple[int, str]:
        """The quota's use after this request's unit, and the download id ("" for lookups)."""
        quota, terms = req.quota, req.terms
        assert quota is not None
        limit = terms.limits[quota]
        now = _utc(req.now_s)
        if quota == "ondemand_lookups":
            return self.leases.spend(req.customer, terms.month, quota, limit, now), ""
        # A download already claimed by this process (the other Range requests of it) is
        # counted; the database claim makes this exact across processes as well.
        claim = terms.claims.get(req.resource)
        if claim is None:
            dl = download_id(req.customer, req.resource, now)
            claim = (self.counters.consume(req.customer, terms.month, quota, limit, now,
                                           claim=dl), dl)
            if len(terms.claims) >= CLAIMS_KEPT:
                terms.claims.clear()
            terms.claims[req.resource] = claim
        return claim

    def release(self) -> int:
        """Give back the lookup units leased and not spent (blocks; the server stopping)."""
        return self.leases.give_back()

    def _check_bytes(self, customer: str, terms: Terms, now_s: float) -> None:
        # bytes grow after delivery (via the ledger); a short per-process cache keeps this
        # read off the hot path; overshoot is bounded by what is served within that window
        if now_s - terms.bytes_at > self.bytes_cache_seconds:
            terms.bytes_used = self.counters.used(customer, terms.month, "bytes")
            terms.bytes_at = now_s
        assert terms.bytes_limit is not None
        if terms.bytes_used >= terms.bytes_limit:
            raise quota_exceeded("bytes", terms.bytes_limit, _utc(now_s))


def _answer(terms: Terms, quota: QuotaName | None, decision: RateDecision | None,
            used: int | None, now_s: float, dl: str) -> Admission:
    """The admission of a request whose rate ``decision`` and quota use were taken."""
    limit = None if quota is None else terms.limits[quota]
    fields = rate_limit_fields(
        terms.policies[quota],
        None if decision is None else (decision.remaining, decision.reset),
        None if limit is None or used is None
        else (str(quota), limit - used, terms.month_end - now_s))
    return Admission(fields=fields, download_id=dl, quota=quota or "", quota_used=used or 0)


class _Request(NamedTuple):
    customer: str
    feed: Feed
    terms: Terms
    quota: QuotaName | None
    resource: str
    now_s: float


def _utc(now_s: float) -> datetime:
    return datetime.fromtimestamp(now_s, UTC)


def _rate_limited(terms: Terms, decision: RateDecision) -> RateLimited:
    rate = terms.plan.rate_limit
    retry = max(1, math.ceil(decision.retry_after))
    return RateLimited(
        f"more than {rate.requests_per_second:g} requests per second "
        f"(burst {rate.burst}); retry in {retry}s",
        retry_after=retry,
        headers=header_dict(rate_limit_fields(terms.policies[None],
                                              (decision.remaining, decision.reset), None)),
    )
