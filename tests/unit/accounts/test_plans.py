"""Plans and entitlements (pure)."""

from __future__ import annotations

import msgspec
import pytest

from feedserver.accounts.models import Plan, parse_snapshot_identifier
from feedserver.accounts.plans import BUILTIN_PLANS, decode_plan, validate_plan
from feedserver.errors import Forbidden, InvalidIdentifier, InvalidParameter
from feedserver.metering.plans import plan_terms


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
                                              "batches"}


def test_metering_reads_plan_terms() -> None:
    terms = plan_terms(_plan("pro"))
    assert terms.name == "pro"
    assert terms.quotas.snapshot_downloads == 1_000
    assert terms.rate.requests_per_second == 50
    assert str(terms.prices.per_gb_egress) == "0.05"


def test_entitlements_check() -> None:
    free = _plan("free").entitlements
    free.check("snapshots", project="enwiki", namespace=0)
    with pytest.raises(Forbidden, match="realtime"):
        free.check("realtime")
    narrow = Plan(name="narrow", feeds=["snapshots"], projects=["simplewiki"], namespaces=[0, 14])
    ent = narrow.entitlements
    ent.check("snapshots", "simplewiki", 14)
    with pytest.raises(Forbidden, match="enwiki"):
        ent.check("snapshots", "enwiki", 0)
    with pytest.raises(Forbidden, match="namespace 6"):
        ent.check("snapshots", "simplewiki", 6)
    assert ent.snapshot_allowed("simplewiki_namespace_0")
    assert not ent.snapshot_allowed("enwiki_namespace_0")
    assert not ent.snapshot_allowed("simplewiki_namespace_6")
    assert not ent.snapshot_allowed("simplewiki_namespace_0", feed="diffs")
    with pytest.raises(Forbidden):
        ent.check_snapshot("enwiki_namespace_0")


def test_parse_snapshot_identifier() -> None:
    assert parse_snapshot_identifier("enwiki_namespace_0") == ("enwiki", 0)
    assert parse_snapshot_identifier("zh_min_nanwiki_namespace_14") == ("zh_min_nanwiki", 14)
    for bad in ["enwiki", "enwiki_namespace_", "enwiki_namespace_x", "../x_namespace_0",
                "EN_namespace_0", "enwiki_namespace_0_chunk_1"]:
        with pytest.raises(InvalidIdentifier):
            parse_snapshot_identifier(bad)


def test_decode_plan_rejects_bad_input() -> None:
    ok = decode_plan(b'{"feeds": ["snapshots"], "prices": {"per_gb_egress": 0.1}}', name="p1")
    assert ok.name == "p1"
    assert str(ok.prices.per_gb_egress) == "0.1"
    bad = [
        b"not json", b"[]", b'{"feeds": ["nope"]}', b'{"feeds": [], "extra": 1}',
        b'{"name": "other"}', b'{"quotas": {"bytes": -1}}', b'{"projects": []}',
        b'{"projects": ["../etc"]}', b'{"namespaces": [-1]}', b'{"feeds": ["diffs", "diffs"]}',
        b'{"rate_limit": {"burst": 0}}', b'{"prices": {"per_gb_egress": "-1"}}',
    ]
    for raw in bad:
        with pytest.raises(InvalidParameter):
            decode_plan(raw, name="p1")
    with pytest.raises(InvalidIdentifier):
        decode_plan(b"{}", name="Bad Name")


def test_max_streams_is_a_plan_setting_metering_reads() -> None:
    plan = decode_plan(b'{"feeds": ["realtime"], "max_streams": 3}', name="rt3")
    assert plan.max_streams == 3 and plan_terms(plan).max_streams == 3
    assert plan_terms(_plan("free")).max_streams is None  # no cap unless the plan sets one
    assert _plan("enterprise").max_streams == 50
    for bad in (b"0", b"-1"):
        with pytest.raises(InvalidParameter, match="max_streams"):
            decode_plan(b'{"feeds": ["realtime"], "max_streams": ' + bad + b"}", name="rt")
