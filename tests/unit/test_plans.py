"""The one plan model: entitlements, the snapshot-identifier rule, validation (pure)."""

from __future__ import annotations

import pytest

from feedserver.errors import Forbidden, InvalidIdentifier, InvalidParameter
from feedserver.identifiers import (
    parse_snapshot_identifier,
)
from feedserver.plans import PRODUCT_FEEDS, Plan, Quotas, decode_plan


def _plan(name: str) -> Plan:
    return Plan(name=name, feeds=["snapshots", "ondemand"])


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


@pytest.mark.parametrize("bad", [
    "enwiki_namespace_01",  # a leading zero would give one snapshot two names
    "enwiki_namespace_1234567",  # namespaces have at most 6 digits
    "1wiki_namespace_0", "_wiki_namespace_0",  # dbnames start with a letter
    "x" * 64 + "_namespace_0",  # at most 63 characters
    "enwiki_namespace_0\n",
])
def test_one_identifier_rule_for_plans_and_keys(bad: str) -> None:
    # Entitlements and blob keys used to check identifiers with different patterns; a name
    # the entitlement check accepted could then reach a store that refused it (or the
    # reverse). Now one rule decides both.
    with pytest.raises(InvalidIdentifier):
        parse_snapshot_identifier(bad)
    with pytest.raises(InvalidIdentifier):
        Plan(name="all", feeds=list(PRODUCT_FEEDS)).entitlements.snapshot_allowed(bad)


def test_quota_limits_by_name() -> None:
    quotas = Quotas(snapshot_downloads=1, chunk_downloads=2, bytes=3, ondemand_lookups=4)
    assert [quotas.limit(q) for q in ("snapshot_downloads", "chunk_downloads", "bytes",
                                      "ondemand_lookups")] == [1, 2, 3, 4]
    assert Quotas().limit("bytes") is None


def test_max_streams_is_a_plan_setting() -> None:
    plan = decode_plan(b'{"feeds": ["realtime"], "max_streams": 3}', name="rt3")
    assert plan.max_streams == 3 and Plan(name="any").max_streams is None
    for bad in (b"0", b"-1"):
        with pytest.raises(InvalidParameter, match="max_streams"):
            decode_plan(b'{"feeds": ["realtime"], "max_streams": ' + bad + b"}", name="rt")


def test_format_flag() -> None:
    # No ``formats``: every format (plans stored before the flag keep what they could read).
    _plan("any").entitlements.check_format("parquet")
    assert decode_plan(b'{"name": "old", "feeds": ["snapshots"]}').formats is None
    only = decode_plan(b'{"name": "ndjson", "feeds": ["snapshots"], "formats": []}')
    with pytest.raises(Forbidden, match="Parquet"):
        only.entitlements.check_format("parquet")
    decode_plan(b'{"name": "pq", "feeds": ["snapshots"], "formats": ["parquet"]}'
                ).entitlements.check_format("parquet")
    for bad in (b'["parquet", "parquet"]', b'["csv"]'):
        with pytest.raises(InvalidParameter):
            decode_plan(b'{"name": "x", "feeds": ["snapshots"], "formats": ' + bad + b"}")
