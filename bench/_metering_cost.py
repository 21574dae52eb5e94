"""Exact cost of metering per response, for A/B by instruction counts (under cachegrind).

``python -m bench._metering_cost PART N MIX [DB]`` runs N responses of MIX (``metadata``:
requests + bytes records; ``chunk``: requests + bytes + one download per 50 responses):

* ``records``: what the event loop does per response after admission
  (``UsageRecorder.record``: the records, the journal append, the queue);
* ``lines``: the journal lines ``record()`` writes, only; ``expand``: those lines, then their
  records (``journal.decode_line``: what the writer does off the event loop, or a child
  process that reads the journal). The expansion's part is ``expand`` minus ``lines``;
* ``build``: the records only (``response_records``); ``append``: the records, then
  ``Ledger.append`` of them in batches of 50 responses, on a copy of DB, a ledger already
  holding 20,000 responses (made by ``prefill``). The ledger writer's part is ``append``
  minus ``build``;
* ``writer``: ``pipeline`` delivering to nowhere (no ledger): ``records``, the writer task
  and its thread hop (journal fsync, the lines' expansion); so ``writer`` minus ``records``
  minus the expansion is the writer task's own part;
* ``writer-lines``: the same delivering the journal's lines as they are to a
  ``LineDestination`` that takes them at once (the ledger appender process's path: no
  hop, the child fsyncs the journal and expands); all the API process does after admission;
* ``pipeline``: ``records`` and the writer task delivering them to that ledger (journal
  fsync, thread hops, ``Ledger.append``, journal release), flushed every 50 responses: all
  of metering but admission.

Run each for N and 3N under ``valgrind --tool=cachegrind``: the difference divided by 2N is
the cost per response (start-up and the pre-filled ledger cancel out). CPU microseconds per
response (this process, loaded machines make them noisy) go to stderr.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedserver.accounts.models import Principal
from feedserver.metering.journal import Journal, Written, decode_line
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import UsageRecord, new_response_id, response_records
from feedserver.metering.response_usage import line, nanos
from feedserver.metering.writer import LedgerDestination, UsageRecorder
from feedserver.plans import Plan
from feedserver.storage.db import SQLiteDatabase

BATCH = 50
PREFILL = 20_000
PRINCIPAL = Principal(customer_id="c-bench", customer_name="Bench", user=None,
                      api_key_id="k-bench", is_admin=False, plan=Plan(name="bench"))


def responses(n: int, mix: str, start: datetime) -> list[list[UsageRecord]]:
    chunk = mix == "chunk"
    return [response_records(
        PRINCIPAL, ts=start + timedelta(microseconds=37 * i),
        feed="snapshots" if chunk else "metadata", project="enwiki",
        response_id=new_response_id(), bytes_sent=150_000 if chunk else 2_345,
        resource=f"chunk_{i // BATCH}@1" if chunk else None, download=chunk)
        for i in range(n)]


def lines(n: int, mix: str, start: datetime) -> list[bytes]:
    chunk = mix == "chunk"
    return [line(nanos(start + timedelta(microseconds=37 * i)), PRINCIPAL, {
        "feed": "snapshots" if chunk else "metadata", "project": "enwiki",
        "response_id": new_response_id(), "bytes_sent": 150_000 if chunk else 2_345,
        "resource": f"chunk_{i // BATCH}@1" if chunk else None, "download": chunk})
        for i in range(n)]


def append(ledger: Ledger, batches: list[list[UsageRecord]]) -> None:
    for i in range(0, len(batches), BATCH):
        ledger.append([rec for recs in batches[i : i + BATCH] for rec in recs])


def report(part: str, n: int, first: float, second: float) -> None:
    print(f"{part}: {first / n * 1e6:.1f} + {second / n * 1e6:.1f} us CPU per response",
          file=sys.stderr)


def record(recorder: UsageRecorder, i: int, mix: str) -> None:
    chunk = mix == "chunk"
    recorder.record(PRINCIPAL, feed="snapshots" if chunk else "metadata", project="enwiki",
                    response_id=new_response_id(), bytes_sent=150_000 if chunk else 2_345,
                    resource=f"chunk_{i // BATCH}@1" if chunk else None, download=chunk)


class Nowhere:
    """A destination that takes every batch at once (the ``writer`` part)."""

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        del records

    async def close(self) -> None:
        return None


class NowhereLines(Nowhere):
    """A ``LineDestination`` that takes every batch of lines at once (``writer-lines``)."""

    async def deliver_lines(self, lines: Sequence[bytes], *, sync: Sequence[Written] = ()
                            ) -> None:
        del lines, sync


async def pipeline(ledger: Ledger | None, journal_dir: Path, n: int, mix: str, *,
                   lines: bool = False) -> None:
    nowhere = NowhereLines() if lines else Nowhere()
    recorder = UsageRecorder(Journal(journal_dir),
                             nowhere if ledger is None else LedgerDestination(ledger))
    await recorder.start()
    start = time.process_time()
    for i in range(n):
        record(recorder, i, mix)
        if i % BATCH == BATCH - 1:
            await recorder.flush()
    await recorder.flush()
    report("pipeline", n, time.process_time() - start, 0.0)
    await recorder.stop()


def main(part: str, n: int, mix: str, template: str) -> None:
    with tempfile.TemporaryDirectory(prefix="metering-cost-") as tmp:
        path = Path(tmp) / "feedserver.db"
        now = datetime.now(UTC)
        if part == "prefill":
            db = SQLiteDatabase(path)
            append(Ledger(db), responses(PREFILL, mix, now - timedelta(hours=1)))
            db.close()
            shutil.copy(path, template)
        elif part in ("writer", "writer-lines"):
            asyncio.run(pipeline(None, Path(tmp) / "journal", n, mix,
                                 lines=part == "writer-lines"))
        elif part == "pipeline":
            shutil.copy(template, path)
            db = SQLiteDatabase(path)
            asyncio.run(pipeline(Ledger(db), Path(tmp) / "journal", n, mix))
            db.close()
        elif part in ("lines", "expand"):
            start = time.process_time()
            made = lines(n, mix, now)
            built = time.process_time()
            if part == "expand":
                for entry in made:
                    decode_line(entry)
            report(part, n, built - start, time.process_time() - built)
        elif part in ("append", "build"):
            shutil.copy(template, path)
            db = SQLiteDatabase(path)
            ledger = Ledger(db)
            start = time.process_time()
            work = responses(n, mix, now)
            built = time.process_time()
            if part == "append":
                append(ledger, work)
            report(part, n, built - start, time.process_time() - built)
            db.close()
        else:
            db = SQLiteDatabase(path)
            journal = Journal(Path(tmp) / "journal")
            journal.open()
            recorder = UsageRecorder(journal, LedgerDestination(Ledger(db)))
            start = time.process_time()
            for i in range(n):
                record(recorder, i, mix)
            report(part, n, time.process_time() - start, 0.0)
            journal.close(delete_if_empty=False)
            db.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
