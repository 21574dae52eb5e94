"""What admission derives from one customer's plan, once per customer and UTC day.

Every request of a customer used to re-derive the same things from its plan and the clock: a
``datetime`` of now and its month, the month's bounds, the rate bucket's name, the
``RateLimit-Policy`` items, the quota limits, and tuple-keyed look-ups of the bytes cache and
of the downloads this process claimed. ``Terms`` holds them for one customer while its plan
and the UTC day stay the same (``current``); the per-request work is then the rate decision,
one leased unit and the two header values (``rate_limit_fields``), made as the bytes the
ASGI server sends: a metered answer hands them to the server as they are, where header
strings were encoded again per request (docs/metering.md, "Headers made as bytes").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from datetime import UTC, datetime

from feedserver.metering.months import month_bounds, month_of
from feedserver.plans import Plan, QuotaName, RateLimit

DAY = 86_400
# One response header as the ASGI server sends it: its lower-case name and its value.
Field = tuple[bytes, bytes]
POLICY = b"ratelimit-policy"
LIMIT = b"ratelimit"
_NAMES = {POLICY: "RateLimit-Policy", LIMIT: "RateLimit"}  # as the draft spells them
CLAIMS_KEPT = 100_000  # downloads remembered per customer and day (then forgotten: re-read)


class Terms:
    """One customer's admission terms for one UTC day (mutable: the bytes cache and the
    downloads claimed by this process that day live here too)."""

    __slots__ = ("bucket", "bytes_at", "bytes_limit", "bytes_used", "claims", "day_end",
                 "day_start", "limits", "month", "month_end", "plan", "policies", "rate")

    def __init__(self, customer: str, plan: Plan, now_s: float) -> None:
        self.plan = plan
        self.bucket = f"rate:{customer}"
        self.rate: RateLimit | None = (plan.rate_limit
                                       if plan.rate_limit.requests_per_second > 0 else None)
        self.bytes_limit = plan.quotas.bytes
        self.day_start = now_s - now_s % DAY  # POSIX days are 86,400 s: UTC midnight
        self.day_end = self.day_start + DAY
        self.month = month_of(datetime.fromtimestamp(self.day_start, UTC))
        start, end = month_bounds(self.month)
        self.month_end = end.timestamp()
        window = int((end - start).total_seconds())
        quotas: tuple[QuotaName, ...] = ("snapshot_downloads", "chunk_downloads",
                                         "ondemand_lookups")
        self.limits = {quota: plan.quotas.limit(quota) for quota in quotas}
        # the ``RateLimit-Policy`` field of the requests consuming each quota (or none)
        self.policies: dict[QuotaName | None, Field] = {
            quota: (POLICY, policy_header(plan, quota, window).encode("ascii"))
            for quota in (None, *quotas)}
        self.bytes_at = -math.inf  # when ``bytes_used`` was read
        self.bytes_used = 0
        # resource -> (the quota's use after its claim, the download id), this day
        self.claims: dict[str, tuple[int, str]] = {}

    def current(self, plan: Plan, now_s: float) -> bool:
        """Still this customer's terms at ``now_s`` under ``plan`` (the principal cache hands
        out a new, equal ``Plan`` every few seconds: adopted when equal)."""
        if not self.day_start <= now_s < self.day_end:
            return False
        if plan is not self.plan:
            if plan != self.plan:
                return False
            self.plan = plan
        return True


def policy_header(plan: Plan, quota: QuotaName | None, window: int) -> str:
    """The ``RateLimit-Policy`` value of a plan's requests that consume ``quota`` (the same
    for every such request within a month of ``window`` seconds); "" when it has no items."""
    items = []
    if plan.rate_limit.requests_per_second > 0:
        items.append(rate_policy("default", plan.rate_limit))
    limit = plan.quotas.limit(quota) if quota is not None else None
    if limit is not None:
        items.append(f'"{quota}";q={limit};w={window}')
    return ", ".join(items)


@functools.lru_cache(maxsize=256)
def rate_policy(policy_name: str, r: RateLimit) -> str:
    """The ``RateLimit-Policy`` item of a plan's rate limit."""
    window = max(1, math.ceil(max(1, r.burst) / r.requests_per_second))
    return f'"{policy_name}";q={max(1, r.burst)};w={window}'


def rate_limit_fields(policy: Field, rate: tuple[int, float] | None,
                      quota: tuple[str, int, float] | None) -> list[Field]:
    """``RateLimit-Policy`` (``policy``, precomputed) and ``RateLimit``: the rate item from
    ``rate`` = ``(remaining, seconds to full)``, the quota item from ``quota`` = ``(name,
    remaining, seconds to the month's end)``; none when there is neither."""
    if rate is not None:
        value = b'"default";r=%d;t=%d' % (rate[0], math.ceil(rate[1]))
        if quota is not None:
            value += b', "%s";r=%d;t=%d' % (quota[0].encode("ascii"), max(0, quota[1]),
                                            math.ceil(quota[2]))
    elif quota is not None:
        value = b'"%s";r=%d;t=%d' % (quota[0].encode("ascii"), max(0, quota[1]),
                                     math.ceil(quota[2]))
    else:
        return []
    return [policy, (LIMIT, value)]


def header_dict(fields: Iterable[Field]) -> dict[str, str]:
    """``fields`` as response headers by name (``RateLimit-Policy``, ``RateLimit``)."""
    return {_NAMES.get(name) or name.decode("latin-1"): value.decode("latin-1")
            for name, value in fields}
