from __future__ import annotations

import asyncio
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from feedserver.errors import StorageError
from feedserver.metering.journal import Journal, Written, decode_line
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import UsageRecord
from feedserver.metering.writer import LedgerDestination, UsageRecorder
from feedserver.storage.db import Database
from tests.unit.metering.conftest import FakePrincipal


def recorder(tmp_path: Path, db: Database, **kw: float) -> tuple[UsageRecorder, Ledger]:
    ledger = Ledger(db)
    return UsageRecorder(Journal(tmp_path / "j"), LedgerDestination(ledger), **kw), ledger


def total(ledger: Ledger, meter: str = "bytes") -> int:
    row = ledger.db.fetchone("SELECT SUM(quantity) FROM usage_ledger WHERE meter = ?", (meter,))
    return int(row[0] or 0) if row else 0


async def test_batches_reach_the_ledger_and_the_journal_empties(tmp_path: Path,
                                                                db: Database) -> None:
    rec_, ledger = recorder(tmp_path, db, batch_size=7, flush_seconds=0.01)
    await rec_.start()
    p = FakePrincipal()
    for i in range(50):
        rec_.record(p, feed="chunks", project="enwiki", response_id=f"r{i}", bytes_sent=i)
    await rec_.flush()
    assert total(ledger) == sum(range(50)) and total(ledger, "requests") == 50
    await rec_.stop()
    assert list((tmp_path / "j").iterdir()) == []
    assert ledger.verify().ok


async def test_an_undecodable_line_is_skipped_and_its_batch_delivered(
        tmp_path: Path, db: Database) -> None:
    # A destination that takes records (the ledger here, Kafka in distributed mode) gets the
    # batch decoded by the writer: a line a caller broke is skipped and logged, as replay
    # skips it, and the rest of its batch still reaches the ledger; the journal empties.
    rec_, ledger = recorder(tmp_path, db, flush_seconds=0.01)
    await rec_.start()
    for i in range(10):
        rec_.record(FakePrincipal(), feed="chunks", project="enwiki", response_id=f"r{i}",
                    bytes_sent="lots" if i == 4 else i + 1)  # type: ignore[arg-type]
    await rec_.flush()
    await rec_.stop()
    assert total(ledger, "requests") == 9 and total(ledger) == sum(range(1, 11)) - 5
    assert list((tmp_path / "j").iterdir()) == []
    assert ledger.verify().ok


async def test_a_crash_is_replayed_once(tmp_path: Path, db: Database) -> None:
    rec_, ledger = recorder(tmp_path, db)
    await rec_.start()
    p = FakePrincipal()
    rec_.record(p, feed="ondemand", project="enwiki", response_id="a", bytes_sent=5, articles=1)
    await rec_.flush()
    # the process "dies": journal left behind, an in-flight body checkpointed at 300 bytes
    rec_.record(p, feed="chunks", project="enwiki", response_id="b", bytes_sent=7)
    rec_.progress(p, feed="chunks", project="enwiki", response_id="c", bytes_sent=300)
    rec_.progress(p, feed="realtime", project=None, response_id="s", bytes_sent=10,
                  stream_seconds=5, stream_events=2)
    rec_.progress(p, feed="realtime", project=None, response_id="s", bytes_sent=40,
                  stream_seconds=9, stream_events=7)
    assert rec_._task is not None
    rec_._task.cancel()
    rec_.journal.close(delete_if_empty=False)
    again, _ = recorder(tmp_path, db)
    assert await again.start() >= 3
    await again.stop()
    assert total(ledger) == 5 + 7 + 300 + 40
    assert (total(ledger, "stream_seconds"), total(ledger, "stream_events")) == (9, 7)
    assert total(ledger, "articles") == 1
    assert ledger.verify().ok


class Flaky:
    def __init__(self, inner: LedgerDestination) -> None:
        self.inner, self.failures = inner, 2

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageError("database is down")
        await self.inner.deliver(records)

    async def close(self) -> None:
        return None


async def test_a_failing_destination_is_retried(tmp_path: Path, db: Database) -> None:
    ledger = Ledger(db)
    rec_ = UsageRecorder(Journal(tmp_path), Flaky(LedgerDestination(ledger)),
                         flush_seconds=0.01)
    await rec_.start()
    rec_.record(FakePrincipal(), feed="diffs", project=None, response_id="x", bytes_sent=9)
    await asyncio.wait_for(rec_.flush(), 10)
    await rec_.stop()
    assert total(ledger) == 9



class Lines:
    """A ``LineDestination`` that keeps what it was handed."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.records: list[UsageRecord] = []
        self.syncs: list[list[Written]] = []  # per batch: the journal's ranges to sync first

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        self.records.extend(records)

    async def deliver_lines(self, lines: Sequence[bytes], *, sync: Sequence[Written] = ()
                            ) -> None:
        self.syncs.append(list(sync))
        self.lines.extend(lines)

    async def close(self) -> None:
        return None


async def test_a_line_destination_gets_the_journals_own_lines(tmp_path: Path) -> None:
    # The ledger appender process decodes the lines itself: the writer must hand it exactly
    # the bytes it journaled (what a replay after kill -9 would read), derive no records,
    # and still release the journal afterwards.
    dest = Lines()
    rec_ = UsageRecorder(Journal(tmp_path / "j"), dest, batch_size=6, flush_seconds=0.01)
    await rec_.start()
    p = FakePrincipal()
    for i in range(20):
        rec_.record(p, feed="chunks", project="enwiki", response_id=f"r{i}", bytes_sent=i + 1)
    [segment] = (tmp_path / "j").iterdir()
    journaled = segment.read_bytes().rstrip(b"\0")
    await asyncio.wait_for(rec_.flush(), 10)
    assert b"".join(dest.lines) == journaled and len(dest.lines) == 20
    assert dest.records == []
    assert [r.quantity for entry in dest.lines for r in decode_line(entry)
            if r.meter == "bytes"] == list(range(1, 21))
    assert rec_.journal.pending() == 0
    # Each batch asked the destination to sync the segment its lines are in (the writer
    # has no worker thread for it any more); a later batch names only what was written
    # since, and together they cover every line.
    assert dest.syncs and all([w.path for w in ranges] == [str(segment)]
                              for ranges in dest.syncs)
    spans = [(w.start, w.upto) for ranges in dest.syncs for w in ranges]
    assert spans[0][0] == 0 and spans[-1][1] >= len(journaled)
    assert all(end <= start for (_, end), (start, _) in pairwise(spans))
    assert rec_.journal.unsynced() == []
    await rec_.stop()


class Down:
    """A destination that always fails (the ledger's database down)."""

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        raise OSError("the ledger is down")

    async def close(self) -> None:
        return None


async def test_stop_gives_up_on_a_failing_destination_and_keeps_the_journal(
        tmp_path: Path) -> None:
    # Ctrl-C on a server whose ledger is down used to retry forever: stop is bounded, and
    # what was not delivered stays in the journal for the next start (nothing lost).
    rec_ = UsageRecorder(Journal(tmp_path / "j"), Down(), batch_size=4, flush_seconds=0.01,
                         max_backoff=0.05, stop_seconds=0.3)
    await rec_.start()
    p = FakePrincipal()
    for i in range(6):
        rec_.record(p, feed="chunks", project="enwiki", response_id=f"r{i}", bytes_sent=i + 1)
    await asyncio.wait_for(rec_.stop(), 10)
    recovered = Journal(tmp_path / "j").recover()
    assert sorted(r.quantity for r in recovered.records if r.meter == "bytes") == \
        list(range(1, 7))
