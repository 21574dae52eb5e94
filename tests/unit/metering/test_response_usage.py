"""One journal line per response: its expansion is EXACTLY the records the server made before.

Usage ids are idempotency keys: a response journaled as one line must expand into the very ids,
meters, quantities, times and download ids that ``response_records`` (one line per record, the
previous journal) made for it, or a replay across the upgrade, or a checkpoint against its final
record, would count twice. So the property compares the two for any input.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.metering.journal import Journal, decode_line
from feedserver.metering.records import Usage, UsageRecord, response_records
from feedserver.metering.response_usage import line, nanos
from feedserver.metering.writer import UsageRecorder
from tests.unit.metering.conftest import FakePrincipal

# Any text JSON can carry (lone surrogates cannot be encoded, in either journal format).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
QUANTITY = st.integers(min_value=0, max_value=2**53)
FEEDS = st.sampled_from(["snapshots", "diffs", "ondemand", "realtime", "batches", "chunks",
                         "auth", "metadata"])
# Server-made response ids (time-ordered usage ids) and any other non-empty text (tests, old ids).
RESPONSE_ID = st.one_of(
    st.builds(lambda ms, rest: f"{ms:012x}{rest:032x}",
              st.integers(min_value=0, max_value=2**48 - 1),
              st.integers(min_value=0, max_value=2**128 - 1)),
    TEXT.filter(bool))
TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2262, 1, 1),
                     timezones=st.just(UTC))
PRINCIPALS = st.builds(FakePrincipal, customer_id=TEXT, api_key_id=st.none() | TEXT,
                       user=st.none() | TEXT)
USAGE = st.fixed_dictionaries(
    {"feed": FEEDS, "project": st.none() | TEXT, "response_id": RESPONSE_ID},
    optional={"request_id": TEXT, "bytes_sent": QUANTITY, "articles": QUANTITY,
              "resource": st.none() | TEXT, "download": st.booleans(),
              "stream_seconds": QUANTITY, "stream_events": QUANTITY})


class Nowhere:
    """A destination never reached: these tests read the journal, not the writer's output."""

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        raise AssertionError("not delivered in these tests")

    async def close(self) -> None:
        return None


@given(PRINCIPALS, USAGE, TIMES)
def test_a_line_expands_into_exactly_the_records_of_the_response(
        principal: FakePrincipal, usage: Usage, ts: datetime) -> None:
    expanded = decode_line(line(nanos(ts), principal, usage))
    assert expanded == response_records(principal, ts=ts, **usage)
    # equal as structs is not enough for the ledger's text: the times are the same instants
    # in the same zone, so ``ts_text`` and the hash chain see the same bytes
    assert [r.ts.utcoffset() for r in expanded] == [ts.utcoffset()] * len(expanded)


@given(PRINCIPALS, USAGE)
def test_what_record_journals_expands_into_the_records_of_the_response(
        tmp_path_factory: pytest.TempPathFactory, principal: FakePrincipal,
        usage: Usage) -> None:
    # The line ``record()`` itself writes (its clock, its encoder), read back by recovery.
    directory = tmp_path_factory.mktemp("j")
    journal = Journal(directory)
    journal.open()
    before = datetime.now(UTC)
    UsageRecorder(journal, Nowhere()).record(principal, **usage)
    after = datetime.now(UTC)
    journal.close(delete_if_empty=False)
    recovered = Journal(directory).recover().records
    ts = recovered[0].ts
    assert before <= ts <= after
    assert sorted(recovered, key=lambda r: r.usage_id) \
        == sorted(response_records(principal, ts=ts, **usage), key=lambda r: r.usage_id)


def test_a_response_without_its_server_id_is_refused_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    recorder = UsageRecorder(journal, Nowhere())
    with pytest.raises(ValueError, match="response id"):
        recorder.record(FakePrincipal(), feed="chunks", project=None, response_id="")
    with pytest.raises(ValueError, match="response id"):
        recorder.progress(FakePrincipal(), feed="chunks", project=None, response_id="")
    assert journal.pending() == 0
    journal.close()
