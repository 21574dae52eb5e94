"""Time-ordered usage ids: deterministic, unique, valid UUIDs that sort by the response's time.

The ledger's ``usage_id`` index is where each new row lands; random (UUIDv5) ids put every row
on a random page. These properties are what let ids carry a time prefix without weakening
exactly-once: the same response always derives the same ids (checkpoints, the final record and
a journal replay agree), and different responses never share one.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from feedserver.metering.corrections import Correction, correct
from feedserver.metering.exports import cloud_event
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import (
    METER_DIGITS,
    METERS,
    new_response_id,
    response_key,
    response_ms,
    response_records,
    response_usage_id,
)
from feedserver.metering.rows import RowQuery, rows_csv, select_rows
from feedserver.storage.db import Database
from tests.unit.metering.conftest import FakePrincipal, rec

# 2000-01-01 .. 2100-01-01 in milliseconds: every time a server can plausibly create ids at.
MS = st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000)
NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
METER = st.sampled_from(METERS)


def server_response_id(ms: int, process: int, n: int) -> str:
    # The layout new_response_id makes (12 hex digits of ms, 96 process bits, a counter),
    # with the clock and the process prefix chosen by the test.
    return f"{ms:012x}{process:024x}{n:08x}"


PROCESS = st.integers(min_value=0, max_value=2**96 - 1)
COUNTER = st.integers(min_value=0, max_value=2**32 - 1)


@given(MS, PROCESS, COUNTER, NAMES, NAMES, METER)
def test_ids_are_deterministic_valid_uuids_carrying_the_response_time(
        ms: int, process: int, n: int, customer: str, key: str, meter: str) -> None:
    rid = server_response_id(ms, process, n)
    uid = response_usage_id(customer, key, rid, meter)
    assert uid == response_usage_id(customer, key, rid, meter)  # a replay derives the same id
    parsed = uuid.UUID(uid)
    assert str(parsed) == uid  # canonical text, as stored and exported
    assert (parsed.version, parsed.variant) == (8, uuid.RFC_4122)
    assert parsed.int >> 80 == ms == response_ms(rid)


@given(st.lists(st.tuples(MS, PROCESS, COUNTER, NAMES, NAMES, METER), min_size=2, max_size=60,
                unique=True))
def test_ids_of_different_inputs_are_unique(inputs: list[tuple[int, int, int, str, str, str]]
                                            ) -> None:
    ids = {response_usage_id(c, k, server_response_id(ms, p, n), m)
           for ms, p, n, c, k, m in inputs}
    assert len(ids) == len(inputs)


@given(st.lists(MS, min_size=2, max_size=40), NAMES, METER)
def test_ids_sort_by_the_response_time(times: list[int], customer: str, meter: str) -> None:
    made = [(ms, response_usage_id(customer, "key", server_response_id(ms, 7, i), meter))
            for i, ms in enumerate(times)]
    by_id = [ms for ms, _ in sorted(made, key=lambda m: m[1])]
    assert by_id == sorted(times)


@given(st.integers(min_value=0, max_value=120_000), st.integers(min_value=0, max_value=10**6))
def test_checkpoints_and_the_final_record_of_a_response_share_their_ids(
        later_ms: int, more_bytes: int) -> None:
    # A checkpoint and the final record are made at different times (their ts differ); the id
    # takes its time from the response id, so the final record supersedes the checkpoint
    # instead of being billed beside it.
    rid = new_response_id()
    start = datetime(2026, 11, 5, 12, tzinfo=UTC)
    first = response_records(FakePrincipal(), feed="chunks", project="enwiki", response_id=rid,
                             bytes_sent=10, ts=start)
    final = response_records(FakePrincipal(), feed="chunks", project="enwiki", response_id=rid,
                             bytes_sent=10 + more_bytes,
                             ts=start + timedelta(milliseconds=later_ms))
    assert [r.usage_id for r in first] == [r.usage_id for r in final]


@given(MS, PROCESS, COUNTER, st.integers(min_value=0, max_value=10**9),
       st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**4),
       st.integers(min_value=0, max_value=10**4))
def test_a_responses_record_ids_are_its_key_and_each_meters_digit(
        ms: int, process: int, n: int, sent: int, articles: int, seconds: int,
        events: int) -> None:
    # The records hash the response once and append the meter's digit; every id must still
    # be exactly ``response_usage_id`` of its meter (what replays, the Kafka consumer and the
    # tests derive), unique within the response, and share the response's key, so one
    # response's meters can later be found by that key alone.
    rid = server_response_id(ms, process, n)
    made = response_records(FakePrincipal(), feed="chunks", project="enwiki", response_id=rid,
                            bytes_sent=sent, articles=articles, stream_seconds=seconds,
                            stream_events=events, ts=datetime(2026, 11, 5, 13, tzinfo=UTC))
    p = FakePrincipal()
    assert [r.usage_id for r in made] == [
        response_usage_id(p.customer_id, p.api_key_id or "", rid, r.meter) for r in made]
    assert [r.meter for r in made] == ["requests"] + [
        m for m, q in (("bytes", sent), ("articles", articles), ("stream_seconds", seconds),
                       ("stream_events", events)) if q]
    key = response_key(p.customer_id, p.api_key_id or "", rid)
    assert {r.usage_id[:35] for r in made} == {key}
    assert len({r.usage_id for r in made}) == len(made)
    assert all(r.usage_id[35] == METER_DIGITS[r.meter] for r in made)


def test_new_response_ids_start_with_their_creation_millisecond_and_increase() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_response_id() for _ in range(100)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 100
    assert all(before <= response_ms(r) <= after for r in ids)
    assert ids == sorted(ids)  # same process: time, then the counter
    # other shapes (never made by the server) have no time: still deterministic ids
    assert response_ms("r1") == 0 == response_ms("zz" + ids[0][2:])


def test_a_ledger_of_old_and_new_ids_verifies_exports_and_corrects(db: Database) -> None:
    # Rows stored before keep their UUIDv5 ids; new rows carry time-ordered ones. Both must
    # live in one chain, be replay-idempotent, exported and corrected alike.
    ledger = Ledger(db)
    old = [rec(1, quantity=500), rec(2, quantity=7)]
    new = response_records(FakePrincipal(), feed="chunks", project="enwiki",
                           response_id=new_response_id(), bytes_sent=300,
                           ts=datetime(2026, 11, 5, 13, tzinfo=UTC))
    assert ledger.append(old) == 2 and ledger.append(new) == 2
    assert ledger.append(old + new) == 0  # a journal replay of both kinds adds nothing
    assert {uuid.UUID(r.usage_id).version for r in old + new} == {5, 8}
    new_bytes = next(r for r in new if r.meter == "bytes")
    correct(ledger, Correction(kind="void", usage_id=new_bytes.usage_id, reason="test traffic",
                               actor="finance"))
    correct(ledger, Correction(kind="void", usage_id=old[0].usage_id, reason="test traffic",
                               actor="finance"))
    assert ledger.verify().ok
    rows = list(select_rows(db, RowQuery(month="2026-11")))
    exported = {cloud_event(r, "feedserver").id for r in rows}
    assert {r.usage_id for r in old + new} <= exported
    assert new_bytes.usage_id in rows_csv(rows)
    assert sum(r.quantity for r in rows if r.meter == "bytes") == 7
