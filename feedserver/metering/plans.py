"""The commercial terms metering reads from a plan, and month arithmetic (exact, UTC).

``PlanTerms`` is metering's own view of ``feedserver.accounts`` ``Plan``: monthly quotas, the
request rate limit and prices. ``plan_terms()`` reads it from any plan object carrying
``quotas``, ``rate_limit`` and ``prices`` attributes (or is already a ``PlanTerms``), so metering
does not depend on how accounts stores plans. A quota of ``None`` means unlimited.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from feedserver.errors import InvalidParameter

QuotaName = Literal["snapshot_downloads", "chunk_downloads", "bytes", "ondemand_lookups"]
QUOTAS: tuple[QuotaName, ...] = (
    "snapshot_downloads", "chunk_downloads", "bytes", "ondemand_lookups"
)


class Quotas(msgspec.Struct, frozen=True, kw_only=True):
    snapshot_downloads: int | None = None
    chunk_downloads: int | None = None
    bytes: int | None = None
    ondemand_lookups: int | None = None

    def limit(self, name: QuotaName) -> int | None:
        value: int | None = getattr(self, name)
        return value


class RatePolicy(msgspec.Struct, frozen=True, kw_only=True):
    requests_per_second: float = 0.0  # 0: no rate limit
    burst: int = 1


class Prices(msgspec.Struct, frozen=True, kw_only=True):
    per_gb_egress: Decimal = Decimal(0)
    per_1000_lookups: Decimal = Decimal(0)
    per_stream_hour: Decimal = Decimal(0)
    monthly_base_fee: Decimal = Decimal(0)
    currency: str = "USD"


class PlanTerms(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "default"
    quotas: Quotas = Quotas()
    rate: RatePolicy = RatePolicy()
    prices: Prices = Prices()
    max_streams: int | None = None  # open realtime streams per customer; None: no cap


UNLIMITED = PlanTerms(name="unlimited")


_FIELDS = {kind: kind.__struct_fields__ for kind in (Quotas, RatePolicy, Prices)}


def _as(kind: type[Any], value: Any) -> Any:
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        raw = {k: v for k, v in value.items() if k in _FIELDS[kind]}
    else:
        raw = {k: getattr(value, k) for k in _FIELDS[kind] if hasattr(value, k)}
    return msgspec.convert(raw, kind, strict=False)


# Admission reads the plan on every request: remember the terms of recently seen plan objects
# (accounts caches principals, so the same frozen plan objects recur). Keyed by identity and
# checked with ``is``, so a reused id never returns another plan's terms.
_TERMS_CACHE: dict[int, tuple[Any, PlanTerms]] = {}
_TERMS_CACHE_SIZE = 1024


def plan_terms(plan: Any) -> PlanTerms:
    """Metering's view of an accounts plan (or of a plain dict in tests and config)."""
    if plan is None:
        return UNLIMITED
    if isinstance(plan, PlanTerms):
        return plan
    cached = _TERMS_CACHE.get(id(plan))
    if cached is not None and cached[0] is plan:
        return cached[1]
    terms = _read_terms(plan)
    if not isinstance(plan, dict):
        if len(_TERMS_CACHE) >= _TERMS_CACHE_SIZE:
            _TERMS_CACHE.clear()
        _TERMS_CACHE[id(plan)] = (plan, terms)
    return terms


def _read_terms(plan: Any) -> PlanTerms:

    def get(*names: str) -> Any:
        for name in names:
            value = plan.get(name) if isinstance(plan, dict) else getattr(plan, name, None)
            if value is not None:
                return value
        return None

    return PlanTerms(
        name=str(get("name", "identifier") or "default"),
        quotas=_as(Quotas, get("quotas", "monthly_quotas")),
        rate=_as(RatePolicy, get("rate_limit", "rate_limits", "rate")),
        prices=_as(Prices, get("prices", "pricing")),
        max_streams=get("max_streams"),
    )


# --- months ----------------------------------------------------------------------------------
# ASCII digits only, and a year whose month and next month are real dates: "9999-12" would end
# in year 10000 and "0000-01" start in year 0 (both once a 500 of /v1/usage).
# The OpenAPI pattern of ``?month=``: years 1970-9998 (as parse_month checks), months 01-12.
MONTH_PATTERN = (r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
                 r"-(0[1-9]|1[0-2])$")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])\Z")
MIN_YEAR, MAX_YEAR = 1970, 9998


def month_of(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m")


def parse_month(month: str) -> tuple[int, int]:
    m = _MONTH.match(month)
    if not m or not MIN_YEAR <= int(m.group(1)) <= MAX_YEAR:
        raise InvalidParameter(
            f"month must be YYYY-MM with a year {MIN_YEAR}-{MAX_YEAR}, got {month[:20]!r}",
            parameter="month")
    return int(m.group(1)), int(m.group(2))


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in UTC."""
    year, mon = parse_month(month)
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_days(month: str) -> int:
    year, mon = parse_month(month)
    return calendar.monthrange(year, mon)[1]


def seconds_to_month_end(now: datetime) -> float:
    return (month_bounds(month_of(now))[1] - now).total_seconds()
