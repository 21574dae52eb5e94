"""The built-in plans accounts seed (the plan model itself: ``tests/unit/test_plans.py``)."""

from __future__ import annotations

import msgspec

from feedserver.accounts.plans import BUILTIN_PLANS
from feedserver.plans import Plan, decode_plan, validate_plan


def _plan(name: str) -> Plan:
    return next(p for p in BUILTIN_PLANS if p.name == name)


def test_builtin_plans_are_valid_and_round_trip() -> None:
    for plan in BUILTIN_PLANS:
        assert validate_plan(plan) is plan
        assert decode_plan(msgspec.json.encode(plan)) == plan
    free = _plan("free")
    assert set(free.feeds) == {"snapshots", "ondemand"}
    assert free.quotas.snapshot_downloads == 30
    assert free.quotas.chunk_downloads == 1_500
    assert free.quotas.ondemand_lookups == 50_000
    assert set(_plan("enterprise").feeds) == {"snapshots", "diffs", "ondemand", "realtime",
                                              "batches", "structured_contents"}
    # Structured Contents is sold with the enterprise plan only.
    assert "structured_contents" not in _plan("pro").feeds


def test_enterprise_caps_open_streams() -> None:
    assert _plan("enterprise").max_streams == 50
    assert _plan("free").max_streams is None  # no cap unless the plan sets one
