"""A batch of response lines as one ledger row per group (``batch_rows``): exact, deterministic,
its lines kept as evidence.

The rows replace the per-response rows only if finance can bill from them exactly as before:
so the property compares, for any batch, every group's sum with the sum of the per-meter
records its lines expand to (``decode_line``, what the per-response ledger books), and the
downloads with theirs. The ids must not depend on anything but the batch (a batch delivered
again is recognised by them), and the evidence must give back every response.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.metering.batch_rows import (
    EVIDENCE_PREFIX,
    batch_rows,
    evidence_data,
    response_keys,
)
from feedserver.metering.journal import decode_line
from feedserver.metering.records import Usage, UsageRecord, merge
from feedserver.metering.response_usage import line, nanos
from tests.unit.metering.conftest import FakePrincipal, old_line, rec, response_line
from tests.unit.metering.test_response_usage import PRINCIPALS, USAGE

# Around a UTC midnight, so batches straddle days (a row must never).
NEAR_MIDNIGHT = st.builds(lambda s: datetime(2026, 11, 30, 23, 59, 50, tzinfo=UTC)
                          + timedelta(microseconds=s),
                          st.integers(min_value=0, max_value=20_000_000))
RESPONSES = st.lists(st.tuples(PRINCIPALS, USAGE, NEAR_MIDNIGHT), min_size=1, max_size=25)


def lines_of(responses: list[tuple[FakePrincipal, Usage, datetime]]) -> list[bytes]:
    """Their journal lines, each response id made unique (the server's are)."""
    return [line(nanos(ts), principal, {**usage, "response_id": f"{usage['response_id']}-{i}"})
            for i, (principal, usage, ts) in enumerate(responses)]


def group_of(r: UsageRecord) -> tuple[object, ...]:
    """A record's group: its UTC day, who, what, meter."""
    return (r.ts.date(), r.customer_id, r.api_key_id, r.user, r.feed, r.project, r.resource,
            r.download_id, r.meter)


def sums(records: list[UsageRecord]) -> tuple[Counter[tuple[object, ...]], set[str]]:
    """Each group's quantity and the download ids."""
    groups: Counter[tuple[object, ...]] = Counter()
    downloads = set()
    for r in records:
        if r.meter == "downloads":
            downloads.add(r.usage_id)
            continue
        groups[group_of(r)] += r.quantity
    return groups, downloads


@given(RESPONSES)
def test_each_group_is_the_sum_of_the_records_its_responses_make(
        responses: list[tuple[FakePrincipal, Usage, datetime]]) -> None:
    lines = lines_of(responses)
    batch = batch_rows(b"".join(lines))
    per_response = merge(r for entry in lines for r in decode_line(entry))
    assert sums(batch.records) == sums(per_response)
    # A group row's time is its first response's (in the lines' order) with that meter.
    first: dict[tuple[object, ...], datetime] = {}
    for entry in lines:
        for r in decode_line(entry):
            first.setdefault(group_of(r), r.ts)
    assert {group_of(r): r.ts for r in batch.records if r.meter != "downloads"} \
        == {g: ts for g, ts in first.items() if g[-1] != "downloads"}
    # One row per group: the groups' keys are distinct, and so are the rows' ids.
    assert len({r.usage_id for r in batch.records}) == len(batch.records)
    assert all(r.request_id == EVIDENCE_PREFIX + batch.evidence.digest for r in batch.records)


@given(RESPONSES)
def test_a_batch_makes_the_same_ids_again_and_keeps_its_lines(
        responses: list[tuple[FakePrincipal, Usage, datetime]]) -> None:
    lines = lines_of(responses)
    data = b"".join(lines)
    batch = batch_rows(data)
    # Delivered again (the child's answer was lost), the batch is the same rows.
    assert batch_rows(data) == batch
    evidence = batch.evidence
    assert evidence.digest == hashlib.sha256(data).hexdigest()
    assert evidence_data(evidence.lines) == data
    times = [msgspec.json.decode(entry)[1] for entry in lines]
    assert (evidence.first_ns, evidence.last_ns) == (min(times), max(times))
    # What a replay must not book again: every response's usage ids but their meter digit.
    assert response_keys([evidence.lines]) == {
        r.usage_id[:-1] for entry in lines for r in decode_line(entry) if r.meter != "downloads"}


def test_another_batch_of_the_same_responses_split_otherwise_has_other_ids() -> None:
    # Ids name the batch: the same responses in two batches are other rows, which is why a
    # replay goes by the evidence, not by the rows' ids.
    lines = [response_line(i) for i in range(4)]
    whole = {r.usage_id for r in batch_rows(b"".join(lines)).records}
    halves = {r.usage_id for part in (lines[:2], lines[2:])
              for r in batch_rows(b"".join(part)).records}
    assert whole.isdisjoint(halves)


def test_a_download_is_one_row_per_download_id_as_per_response() -> None:
    day = datetime(2026, 11, 5, 12, tzinfo=UTC)
    lines = [response_line(i, bytes_sent=100, ts=day + timedelta(seconds=i),
                           resource=f"chunk_{i % 2}") for i in range(6)]
    records = batch_rows(b"".join(lines)).records
    downloads = [r for r in records if r.meter == "downloads"]
    assert len(downloads) == 2 and {r.quantity for r in downloads} == {1}
    assert {r.usage_id for r in downloads} == {
        r.usage_id for entry in lines for r in decode_line(entry) if r.meter == "downloads"}
    by_meter = Counter({r.meter: 0 for r in records})
    for r in records:
        by_meter[r.meter] += r.quantity
    assert by_meter == Counter(requests=6, bytes=600, downloads=2)


@pytest.mark.parametrize("data", [
    b"",  # nothing
    response_line(1).rstrip(b"\n"),  # torn: the last line has no newline
    response_line(1) + b"\n" + response_line(2),  # an empty line
    old_line(rec(1)),  # a usage record's line, not a response's
    response_line(1) + b'["response",1]\n',  # a response line missing its fields
    b'["response",' + b"9" * 40 + b',"c",null,null,{"feed":"chunks","project":null,'
    b'"response_id":"r"}]\n',  # a time past any 64-bit nanosecond count
    b"\xff\xfe\n",  # not text
])
def test_a_batch_with_any_line_that_is_not_a_response_is_refused_whole(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        batch_rows(data)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_batch_or_refused(data: bytes) -> None:
    # Hostile or damaged frames reach the appender: one typed error, never another exception.
    with contextlib.suppress(msgspec.DecodeError):
        batch_rows(data)
