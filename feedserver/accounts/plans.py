"""The built-in plans accounts seed into every database (the model and its validation are
``feedserver.plans``).

The built-ins are seeded once; an operator's later edits to them are never overwritten. Free
tier numbers follow Wikimedia Enterprise's current free account (reference §7): 30 snapshot
downloads, 1,500 chunk downloads and 50,000 on-demand lookups a month, no realtime or batches.
"""

from __future__ import annotations

from decimal import Decimal

from feedserver.plans import Plan, Prices, Quotas, RateLimit

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
        description="Every feed including realtime and Structured Contents, no caps, billed "
                    "by usage.",
        feeds=["snapshots", "diffs", "ondemand", "realtime", "batches", "structured_contents"],
        rate_limit=RateLimit(requests_per_second=200, burst=400),
        prices=Prices(per_gb_egress=Decimal("0.02"), per_1000_lookups=Decimal("0.20"),
                      per_stream_hour=Decimal("1.00"), monthly_base_fee=Decimal("5000")),
        max_streams=50,
    ),
)
DEFAULT_PLAN = "free"
