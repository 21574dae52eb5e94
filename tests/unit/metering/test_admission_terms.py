"""Admission's precomputed terms answer what the plan and the clock give from scratch."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from feedserver.metering.admission_terms import (
    Terms,
    header_dict,
    rate_limit_fields,
    rate_policy,
)
from feedserver.metering.months import month_bounds, month_of
from feedserver.metering.ratelimit import RateDecision
from feedserver.plans import Plan, QuotaName, Quotas, RateLimit

QUOTAS: tuple[QuotaName, ...] = ("snapshot_downloads", "chunk_downloads", "ondemand_lookups")
plans = st.builds(
    lambda rps, burst, limits: Plan(
        name="p", rate_limit=RateLimit(requests_per_second=rps, burst=burst),
        quotas=Quotas(**dict(zip(QUOTAS, limits, strict=True)))),
    st.sampled_from([0.0, 0.5, 1.0, 7.0, 100.0, 1e6]), st.integers(0, 10**6),
    st.tuples(*[st.none() | st.integers(0, 10**9)] * 3))
# whole milliseconds, month and day boundaries included
times = st.integers(0, 4_102_444_800_000).map(lambda ms: ms / 1000)


def rate_headers(
    policy_name: str, terms: Plan, decision: RateDecision | None,
    quota: tuple[str, int, int, float, float] | None,
) -> dict[str, str]:
    """The headers built from scratch, as admission built them before ``Terms`` (the
    reference the precomputed ones must equal). ``quota`` is ``(name, limit, remaining,
    window_seconds, reset_seconds)``."""
    policies: list[str] = []
    limits: list[str] = []
    if decision is not None:
        policies.append(rate_policy(policy_name, terms.rate_limit))
        limits.append(f'"{policy_name}";r={decision.remaining};t={math.ceil(decision.reset)}')
    if quota is not None:
        name, limit, remaining, window_s, reset = quota
        policies.append(f'"{name}";q={limit};w={int(window_s)}')
        limits.append(f'"{name}";r={max(0, remaining)};t={math.ceil(reset)}')
    if not policies:
        return {}
    return {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(limits)}


@given(plans, times, st.none() | st.sampled_from(QUOTAS), st.integers(0, 10**6),
       st.floats(0, 1e6), st.integers(0, 10**9))
def test_headers_are_those_made_from_scratch(plan: Plan, now_s: float, quota: QuotaName | None,
                                             remaining: int, reset: float, used: int) -> None:
    terms = Terms("acme", plan, now_s)
    assert terms.day_start <= now_s < terms.day_end and terms.current(plan, now_s)
    now = datetime.fromtimestamp(now_s, UTC)
    assert terms.month == month_of(now)
    start, end = month_bounds(terms.month)
    assert terms.month_end == end.timestamp()
    limited = plan.rate_limit.requests_per_second > 0
    decision = RateDecision(True, remaining, reset, 0.0) if limited else None
    limit = plan.quotas.limit(quota) if quota is not None else None
    scratch = rate_headers("default", plan, decision, None if limit is None else (
        quota, limit, limit - used, (end - start).total_seconds(), (end - now).total_seconds()))
    fields = rate_limit_fields(
        terms.policies[quota], None if decision is None else (remaining, reset),
        None if limit is None else (str(quota), limit - used, terms.month_end - now_s))
    assert header_dict(fields) == scratch
    # sent as they are (``send_later``): the names lower-case, as an ASGI server expects
    assert all(name == name.lower() for name, _ in fields)


@given(plans, times)
def test_terms_end_with_the_day_and_a_changed_plan(plan: Plan, now_s: float) -> None:
    terms = Terms("acme", plan, now_s)
    assert not terms.current(plan, terms.day_end)
    assert not terms.current(plan, math.nextafter(terms.day_start, -math.inf))
    equal = Plan(name=plan.name, rate_limit=plan.rate_limit, quotas=plan.quotas)
    assert terms.current(equal, now_s) and terms.plan is equal  # an equal plan is adopted
    other = Plan(name="other", rate_limit=plan.rate_limit, quotas=plan.quotas)
    assert not terms.current(other, now_s)
