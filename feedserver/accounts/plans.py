"""Built-in plans and plan validation (pure: no I/O).

The built-ins are seeded once; an operator's later edits to them are never overwritten. Free
tier numbers follow Wikimedia Enterprise's current free account (reference §7): 30 snapshot
downloads, 1,500 chunk downloads and 50,000 on-demand lookups a month, no realtime or batches.
"""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec

from feedserver.accounts.models import Plan, Prices, Quotas, RateLimit
from feedserver.errors import InvalidIdentifier, InvalidParameter

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_PROJECT = re.compile(r"^(\*|[a-z0-9_]{1,64})$")
_GB = 1024**3

BUILTIN_PLANS: tuple[Plan, ...] = (
    Plan(
        name="free",
        description="Monthly snapshots and on-demand lookups, capped like WME's free account.",
        feeds=["snapshots", "ondemand"],
        quotas=Quotas(snapshot_downloads=30, chunk_downloads=1_500, ondemand_lookups=50_000),
        rate_limit=RateLimit(requests_per_second=10, burst=20),
    ),
    Plan(
        name="pro",
        description="Snapshots, diffs, on-demand and hourly batches, billed by egress.",
        feeds=["snapshots", "diffs", "ondemand", "batches"],
        quotas=Quotas(snapshot_downloads=1_000, chunk_downloads=100_000,
                      bytes=5_000 * _GB, ondemand_lookups=1_000_000),
        rate_limit=RateLimit(requests_per_second=50, burst=100),
        prices=Prices(per_gb_egress=Decimal("0.05"), per_1000_lookups=Decimal("0.50"),
                      monthly_base_fee=Decimal("500")),
    ),
    Plan(
        name="enterprise",
        description="Every feed including realtime, no caps, billed by usage.",
        feeds=["snapshots", "diffs", "ondemand", "realtime", "batches"],
        rate_limit=RateLimit(requests_per_second=200, burst=400),
        prices=Prices(per_gb_egress=Decimal("0.02"), per_1000_lookups=Decimal("0.20"),
                      per_stream_hour=Decimal("1.00"), monthly_base_fee=Decimal("5000")),
        max_streams=50,
    ),
)
DEFAULT_PLAN = "free"


def check_name(name: str, what: str = "plan") -> str:
    if not _NAME.match(name):
        raise InvalidIdentifier(
            f"{what} name must be 1-64 of a-z 0-9 _ . - (starting alphanumeric), got {name!r}",
            name=name,
        )
    return name


def validate_plan(plan: Plan) -> Plan:
    """Reject plans that would decode but make no sense (negative quotas, unknown projects)."""
    check_name(plan.name)
    if len(set(plan.feeds)) != len(plan.feeds):
        raise InvalidParameter("plan feeds must not repeat", parameter="feeds")
    if not plan.projects:
        raise InvalidParameter("plan projects must not be empty (use [\"*\"] for all)",
                               parameter="projects")
    for project in plan.projects:
        if not _PROJECT.match(project):
            raise InvalidParameter(f"invalid project {project!r} in plan", parameter="projects")
    if plan.namespaces is not None and any(n < 0 for n in plan.namespaces):
        raise InvalidParameter("plan namespaces must be >= 0", parameter="namespaces")
    for field in msgspec.structs.fields(Quotas):
        value = getattr(plan.quotas, field.name)
        if value is not None and value < 0:
            raise InvalidParameter(f"quota {field.name} must be >= 0 or null",
                                   parameter=field.name)
    if plan.rate_limit.requests_per_second < 0 or plan.rate_limit.burst < 1:
        raise InvalidParameter("rate_limit needs requests_per_second >= 0 and burst >= 1",
                               parameter="rate_limit")
    if plan.max_streams is not None and plan.max_streams < 1:
        raise InvalidParameter("max_streams must be >= 1 or null (no cap); leave realtime out "
                               "of the plan's feeds to allow none", parameter="max_streams")
    for field in msgspec.structs.fields(Prices):
        value = getattr(plan.prices, field.name)
        if isinstance(value, Decimal) and (not value.is_finite() or value < 0):
            raise InvalidParameter(f"price {field.name} must be >= 0", parameter=field.name)
    return plan


def decode_plan(raw: bytes | str, *, name: str | None = None) -> Plan:
    """A plan from JSON (as ``plans create --from-json`` reads it); ``name`` fills a missing one."""
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidParameter(f"plan is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidParameter("plan JSON must be an object")
    if name is not None and data.setdefault("name", name) != name:
        raise InvalidParameter(
            f"plan JSON names {data['name']!r} but the command names {name!r}",
            parameter="name",
        )
    try:
        plan = msgspec.convert(data, Plan)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"invalid plan: {exc}") from exc
    return validate_plan(plan)


def encode_plan(plan: Plan) -> bytes:
    return msgspec.json.encode(plan)


def load_stored_plan(raw: bytes | str) -> Plan:
    """A plan as stored by us (trusted, already validated)."""
    return msgspec.json.decode(raw, type=Plan)
