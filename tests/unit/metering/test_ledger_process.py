"""The ledger appender process (``ledger_process.py``, ``ledger_child.py``) on a real ledger.

Every test starts real child processes on the test's own database (SQLite here; the same
tests run on PostgreSQL from ``tests/integration/postgres``). What they pin: the journal is
released only after the child answered, so a child killed, stopped or failing loses nothing
and doubles nothing; the child never outlives the API process; hostile bytes on the wire get
a typed answer, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.config import load_settings
from feedserver.errors import LedgerAppenderFailed
from feedserver.metering.journal import Journal, Written, decode_line, encode_lines
from feedserver.metering.ledger import Ledger
from feedserver.metering.ledger_child import Reply, append, header, serve, sync, sync_frame
from feedserver.metering.ledger_process import LedgerProcess, _reply, child_database
from feedserver.metering.service import open_metering
from feedserver.metering.writer import LedgerDestination, UsageRecorder
from feedserver.storage.db import Database, SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog
from tests.conftest import ROOT
from tests.unit.metering.conftest import FakePrincipal, rec, response_line

WAIT = 30.0  # every wait below is bounded by this


@pytest.fixture
def url(db: Database, request: pytest.FixtureRequest) -> str:
    """The URL the child opens: the test's own database."""
    if isinstance(db, SQLiteDatabase):
        return "sqlite:///" + str(Path(db.path).resolve())
    return str(request.getfixturevalue("fresh_postgres_url"))


def appender(tmp_path: Path, url: str, **kw: float) -> LedgerProcess:
    """A child booking each response's meters as rows (``ledger_granularity = "response"``):
    these tests count the rows of single responses; "Rows per batch" below is the default's."""
    return LedgerProcess(load_settings({}, data_dir=str(tmp_path),
                                       ledger_granularity="response"), url, **kw)


def totals(ledger: Ledger) -> tuple[int, int, int]:
    """(rows, distinct usage ids, bytes): rows == ids means nothing doubled."""
    row = ledger.db.fetchone(
        "SELECT COUNT(*), COUNT(DISTINCT usage_id), "
        "SUM(CASE WHEN meter = 'bytes' THEN quantity ELSE 0 END) FROM usage_ledger")
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2] or 0)


def gone(pid: int) -> bool:
    """The process exited (a zombie not yet reaped by whoever adopted it counts)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}


def kill_and_close(pidfd: int) -> None:
    """SIGKILL the process of ``pidfd`` if it still exists (never another that took its
    number), and close the pidfd."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    os.close(pidfd)


async def wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        await asyncio.sleep(0.05)


def test_settings_choose_the_process_for_the_database_they_name(
        db: Database, url: str, tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=str(tmp_path), database_url=url)
    assert child_database(settings, db) == url
    metering = open_metering(settings, db, EmbeddedEventLog(db))
    assert metering.recorder is not None
    assert isinstance(metering.recorder.destination, LedgerProcess)
    threads = open_metering(load_settings({}, data_dir=str(tmp_path), database_url=url,
                                          ledger_appender="thread"), db, EmbeddedEventLog(db))
    assert threads.recorder is not None
    assert isinstance(threads.recorder.destination, LedgerDestination)
    # A database object that is not the one the settings name (nor one a child could open)
    # stays in this process: the child would write elsewhere.
    other = load_settings({}, data_dir=str(tmp_path / "elsewhere"))
    assert child_database(other, db) is None
    assert child_database(settings, SQLiteDatabase(":memory:")) is None


async def record_chunks(recorder: UsageRecorder, n: int) -> None:
    """``n`` chunk responses of ``FakePrincipal`` (bytes 1..n) recorded, then flushed."""
    for i in range(n):
        recorder.record(FakePrincipal(), feed="chunks", project="enwiki", response_id=f"r{i}",
                        bytes_sent=i + 1)
    await asyncio.wait_for(recorder.flush(), WAIT)


async def test_batches_reach_the_ledger_through_the_child(
        tmp_path: Path, db: Database, url: str) -> None:
    ledger = Ledger(db)
    dest = appender(tmp_path, url)
    recorder = UsageRecorder(Journal(tmp_path / "j"), dest, batch_size=7, flush_seconds=0.01)
    await dest.start()  # as ``Metering.start`` does: before the first request
    await recorder.start()
    pid = dest.pid
    assert pid is not None
    await record_chunks(recorder, 50)
    assert totals(ledger) == (100, 100, sum(range(1, 51)))
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert list((tmp_path / "j").iterdir()) == []  # every line released after the answers
    assert dest.pid is None and gone(pid)  # end-of-file: the child left
    assert ledger.verify().ok


def wakeups(pid: int) -> int:
    """Times the main thread of ``pid`` went to sleep and was woken (voluntary context
    switches: a timer, a readable socket or pidfd)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no context switch count for {pid}")


async def test_an_idle_child_does_not_wake(tmp_path: Path, db: Database, url: str) -> None:
    # One idle child per API worker, on a 2-core machine beside the event loop: it must sleep
    # in one poll until a frame or its parent's exit (the pidfd), not wake on a timer (it did,
    # every second). Idle for longer than two of the old periods: not one wake-up.
    dest = appender(tmp_path, url)
    await dest.start()
    pid = dest.pid
    assert pid is not None
    try:
        await dest.deliver([rec(1)])  # the child is past its start-up, in its poll
        await asyncio.sleep(0.2)
        before = wakeups(pid)
        await asyncio.sleep(2.5)
        assert wakeups(pid) == before
        await dest.deliver([rec(2)])  # and a frame still wakes it
        assert totals(Ledger(db))[1] == 2
    finally:
        await asyncio.wait_for(dest.close(), WAIT)


async def record_killing_children(tmp_path: Path, dest: LedgerProcess) -> list[int]:
    """600 chunk responses (bytes 1..600) recorded through ``dest`` while its child is
    killed four times, most likely mid-append; flushed and stopped. The pids killed."""
    recorder = UsageRecorder(Journal(tmp_path / "j"), dest, batch_size=20, flush_seconds=0.005,
                             max_backoff=0.05)
    await dest.start()
    await recorder.start()
    killed = []
    for i in range(600):
        recorder.record(FakePrincipal(), feed="chunks", project="enwiki", response_id=f"r{i}",
                        bytes_sent=i + 1)
        if i % 10 == 9:
            await asyncio.sleep(0.002)  # batches stream to the child meanwhile
        if i % 150 == 75:  # kill whichever child runs now, most likely mid-append
            pid = dest.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    await asyncio.wait_for(recorder.flush(), WAIT)
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert list((tmp_path / "j").iterdir()) == []  # every line released after the answers
    return killed


async def test_a_child_killed_mid_stream_loses_nothing_and_doubles_nothing(
        tmp_path: Path, db: Database, url: str) -> None:
    ledger = Ledger(db)
    dest = appender(tmp_path, url)
    killed = await record_killing_children(tmp_path, dest)
    assert killed and dest.pid is None
    assert totals(ledger) == (1200, 1200, sum(range(1, 601)))
    assert ledger.verify().ok


async def test_a_batch_committed_before_its_answer_was_lost_is_not_doubled(
        tmp_path: Path, db: Database, url: str) -> None:
    # The child may die after its commit and before its answer: the writer then delivers the
    # same records again, to a new child.
    ledger = Ledger(db)
    records = [rec(i, meter=m) for i in range(30) for m in ("bytes", "requests")]
    first, second = appender(tmp_path, url), appender(tmp_path, url)
    try:
        await first.deliver(records)
        await second.deliver(records)
    finally:
        await first.close()
        await second.close()
    assert totals(ledger) == (60, 60, 300)
    assert ledger.verify().ok


def mixed_lines() -> list[bytes]:
    """40 responses' lines, bytes 1..40, every other one a download of one of 3 chunks."""
    return [response_line(i, bytes_sent=i + 1, resource=f"chunk_{i % 3}" if i % 2 else None)
            for i in range(40)]


async def test_the_journal_lines_the_child_reads_make_the_rows_the_records_make(
        tmp_path: Path, db: Database, url: str) -> None:
    # The writer hands the child the journal's own lines (no records made in the API
    # process); the child's rows must be exactly those of the records the lines expand to,
    # and a batch delivered again (a lost answer) appends nothing.
    ledger = Ledger(db)
    lines = mixed_lines()
    expected = sorted((r.usage_id, r.meter, r.quantity, r.download_id)
                      for entry in lines for r in decode_line(entry))
    dest = appender(tmp_path, url)
    try:
        await dest.deliver_lines(lines)
        await dest.deliver_lines(lines)
    finally:
        await dest.close()
    rows = ledger.db.fetchall(
        "SELECT usage_id, meter, quantity, download_id FROM usage_ledger")
    # Downloads of one resource and day share their id: one row each, as through records.
    assert sorted((str(a), str(b), int(c), str(d)) for a, b, c, d in rows) == \
        sorted({*expected})
    assert ledger.verify().ok


async def test_an_undecodable_line_is_skipped_and_holds_nothing_back(
        tmp_path: Path, db: Database, url: str) -> None:
    # A caller that breaks ``Usage``'s types writes a line nobody can decode: the child
    # refuses that batch whole, the API process decodes it itself, skips the bad line and
    # delivers the rest (as the writer did before the child read lines); the journal empties.
    ledger = Ledger(db)
    dest = appender(tmp_path, url)
    recorder = UsageRecorder(Journal(tmp_path / "j"), dest, flush_seconds=0.01)
    await recorder.start()
    for i in range(10):
        recorder.record(FakePrincipal(), feed="chunks", project="enwiki", response_id=f"r{i}",
                        bytes_sent="lots" if i == 4 else i + 1)  # type: ignore[typeddict-item]
    await asyncio.wait_for(recorder.flush(), WAIT)
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert totals(ledger) == (18, 18, sum(range(1, 11)) - 5)
    assert list((tmp_path / "j").iterdir()) == []
    assert ledger.verify().ok


async def test_an_append_error_in_the_child_is_retried_and_the_journal_kept(
        tmp_path: Path, db: Database, url: str) -> None:
    ledger = Ledger(db)
    dest = appender(tmp_path, url)
    recorder = UsageRecorder(Journal(tmp_path / "j"), dest, flush_seconds=0.01,
                             max_backoff=0.05)
    await recorder.start()
    # A real failure inside the child's transaction: the chain head is not there.
    db.execute("ALTER TABLE usage_chain_head RENAME TO usage_chain_head_away")
    try:
        recorder.record(FakePrincipal(), feed="diffs", project=None, response_id="x",
                        bytes_sent=9)
        with pytest.raises(LedgerAppenderFailed, match="appender"):
            await dest.deliver([rec(1)])
        for _ in range(6):  # the writer retries meanwhile (backoff up to 0.05 s)
            await asyncio.sleep(0.05)
            assert recorder.journal.pending() == 1  # one line per response, held
    finally:
        db.execute("ALTER TABLE usage_chain_head_away RENAME TO usage_chain_head")
    await asyncio.wait_for(recorder.flush(), WAIT)
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert totals(ledger) == (2, 2, 9)
    assert ledger.verify().ok


async def test_a_child_that_does_not_answer_is_replaced(
        tmp_path: Path, db: Database, url: str) -> None:
    ledger = Ledger(db)
    dest = appender(tmp_path, url, ack_seconds=0.5)
    await dest.start()
    stuck = dest.pid
    assert stuck is not None
    # A pidfd, not the number: once the appender reaps it, the number may be another process's
    # (pid_max is 32,768 here and the suite starts thousands), which a kill must never reach.
    stuck_fd = os.pidfd_open(stuck)
    signal.pidfd_send_signal(stuck_fd, signal.SIGSTOP)  # hung: the frame goes, no answer comes
    try:
        with pytest.raises(LedgerAppenderFailed, match="lost"):
            await asyncio.wait_for(dest.deliver([rec(1)]), WAIT)
        await wait_until_gone(stuck)  # killed, not left behind
        await asyncio.wait_for(dest.deliver([rec(1), rec(2)]), WAIT)
    finally:
        kill_and_close(stuck_fd)
        await dest.close()
    assert totals(ledger) == (2, 2, 20)


PARENT = textwrap.dedent("""
    import asyncio, os, sys, time
    from feedserver.config import load_settings
    from feedserver.metering.ledger_process import LedgerProcess

    async def main():
        dest = LedgerProcess(load_settings({}, data_dir=sys.argv[1]), sys.argv[2])
        await dest.start()
        keeper = os.fork()  # inherits this end of the socket: no end-of-file reaches the child
        if keeper == 0:
            time.sleep(60)
            os._exit(0)
        print(dest.pid, keeper, flush=True)
        time.sleep(60)

    asyncio.run(main())
""")


async def test_the_child_leaves_when_the_api_process_dies(tmp_path: Path, url: str) -> None:
    # The hard case: a forked sibling still holds the API process's end of the socket, so the
    # child sees no end-of-file; it must notice the death itself (bounded).
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), url],
                              stdout=subprocess.PIPE, cwd=ROOT, text=True)
    keeper_fd = -1
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), WAIT)
        child, keeper = (int(n) for n in line.split())
        keeper_fd = os.pidfd_open(keeper)  # it is not ours to reap: its number may be reused
        assert not gone(child)
        parent.kill()
        parent.wait(WAIT)
        await wait_until_gone(child)
    finally:
        parent.kill()
        parent.wait(WAIT)
        if keeper_fd >= 0:
            kill_and_close(keeper_fd)


# --- hostile bytes on the wire ------------------------------------------------------------------
class Wire:
    """``serve`` in a thread of this process on one end of a socket pair; the test is the
    (hostile) parent on the other end."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.ours, theirs = socket.socketpair()
        self.ours.settimeout(WAIT)  # a hang fails the test instead of blocking it
        self.thread = threading.Thread(target=serve, args=(theirs, os.getpid()), daemon=True)
        self.thread.start()
        config = msgspec.json.encode(load_settings({}, data_dir=str(tmp_path),
                                                   database_url=url))
        assert self.ask(header(len(config)) + config).ok

    def ask(self, data: bytes) -> Reply:
        self.ours.sendall(data)
        line = b""
        while not line.endswith(b"\n"):
            chunk = self.ours.recv(1)
            assert chunk, "the child closed without an answer"
            line += chunk
        return msgspec.json.decode(line, type=Reply)

    def ended(self) -> bool:
        self.thread.join(WAIT)
        return not self.thread.is_alive()


def test_a_damaged_frame_is_refused_whole_and_the_next_one_served(
        tmp_path: Path, db: Database, url: str) -> None:
    ledger = Ledger(db)
    wire = Wire(url, tmp_path)
    good = encode_lines([rec(1), rec(2)])
    for body in (b'{"usage_id": 1}\n', good + b"not json\n", good[:-1], b"\xff\xfe\n"):
        reply = wire.ask(header(len(body)) + body)
        assert (reply.ok, reply.error) == (False, "BadFrame")
    assert ledger.count() == 0  # nothing of a damaged frame
    assert wire.ask(header(len(good)) + good) == Reply(ok=True, new=2)
    wire.ours.close()
    assert wire.ended()


@pytest.mark.parametrize("head", [b"X" * 16, b"L" + b"9" * 14 + b"\n", b"L-0000000000001\n",
                                  b"L00000000000001x"])
def test_a_malformed_header_is_answered_and_ends_the_child(
        tmp_path: Path, db: Database, url: str, head: bytes) -> None:
    Ledger(db)
    wire = Wire(url, tmp_path)
    reply = wire.ask(head)
    assert (reply.ok, reply.error) == (False, "BadFrame")
    assert wire.ended()  # no way to find the next frame: it leaves (the parent restarts one)


def test_a_frame_cut_short_ends_the_child(tmp_path: Path, db: Database, url: str) -> None:
    Ledger(db)
    wire = Wire(url, tmp_path)
    wire.ours.sendall(header(1000) + b"{}")
    wire.ours.shutdown(socket.SHUT_WR)
    assert wire.ended()


def ranges(*paths: str, start: int = 0, upto: int = 10) -> list[Written]:
    return [Written(path, 1, start, upto) for path in paths]


def test_a_sync_frame_syncs_the_ranges_it_names_and_refuses_anything_else(
        tmp_path: Path, db: Database, url: str) -> None:
    # The writer's batches no longer fsync the journal in a worker thread of the API
    # process: the child syncs the ranges written, before the lines. It syncs journal
    # segments only; a segment deleted meanwhile was committed (nothing to do); any other
    # name, or a range that is none, refuses the frame and the child goes on serving.
    Ledger(db)
    wire = Wire(url, tmp_path)
    journal = Journal(tmp_path / "j")
    journal.open()
    journal.append(response_line(0))
    [written] = journal.unsynced()
    assert 0 == written.start < written.upto
    assert wire.ask(sync_frame([written, *ranges(str(tmp_path / "j" / "gone.journal"))])).ok
    journal.synced([written])
    assert journal.unsynced() == []
    for bad in (ranges("relative.journal"), ranges(str(tmp_path / "feedserver.db")),
                ranges("/x/a.journal\0"),
                ranges(str(tmp_path / "j" / "gone.journal"), "../escape.journal"),
                ranges(written.path, start=-1), ranges(written.path, start=11, upto=10)):
        reply = wire.ask(sync_frame(bad))
        assert (reply.ok, reply.error) == (False, "BadFrame")
    body = b"\xff\xfe"
    assert (wire.ask(header(len(body), b"F") + body).error) == "BadFrame"
    for body in (b'["/a.journal"]', b'[["/a.journal", 1, 0]]'):  # not lists of ranges
        assert (wire.ask(header(len(body), b"F") + body).error) == "BadFrame"
    # A range past the file's end is clamped to it (a closed segment is truncated), however
    # large its integers.
    assert wire.ask(sync_frame(ranges(written.path, upto=10**40))).ok
    assert wire.ask(sync_frame([])).ok  # nothing to sync
    # A path may hold any character (a newline in a data directory): the body is JSON.
    odd = tmp_path / "a\nb.journal"
    odd.write_bytes(b"")
    assert wire.ask(sync_frame(ranges(str(odd)))).ok
    good = encode_lines([rec(1)])
    assert wire.ask(header(len(good)) + good) == Reply(ok=True, new=1)
    journal.close()
    wire.ours.close()
    assert wire.ended()


def test_a_failed_fsync_is_an_error_not_ok(tmp_path: Path) -> None:
    # A directory with the journal's suffix cannot be opened for fsync the way a segment is
    # (O_NOFOLLOW on a symlink fails too): the answer is an error, so the writer retries
    # and keeps the lines journaled, instead of appending lines that may not be durable.
    bad = tmp_path / "link.journal"
    bad.symlink_to(tmp_path)
    reply = sync(msgspec.json.encode(ranges(str(bad))))
    assert (reply.ok, reply.error) == (False, "JournalSyncFailed")


async def test_a_journal_in_a_relative_directory_reaches_the_ledger(
        tmp_path: Path, db: Database, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # ``make run`` serves from a relative data directory (``var``): the segments the writer
    # asks the child to fsync must still be absolute paths (the child refuses any other), or
    # no batch would ever reach the ledger. Found by hand on a fresh clone: the suite's data
    # directories were all absolute.
    monkeypatch.chdir(tmp_path)
    ledger = Ledger(db)
    dest = appender(tmp_path, url)
    recorder = UsageRecorder(Journal("relative-journal"), dest, batch_size=4,
                             flush_seconds=0.01)
    await dest.start()
    await recorder.start()
    await record_chunks(recorder, 10)
    assert totals(ledger) == (20, 20, sum(range(1, 11)))
    await asyncio.wait_for(recorder.stop(), WAIT)
    assert list((tmp_path / "relative-journal").iterdir()) == []


async def test_a_batch_reaches_the_ledger_only_after_its_journal_was_synced(
        tmp_path: Path, db: Database, url: str) -> None:
    # Through the real child: deliver_lines with sync names the segment; a name the child
    # refuses fails the delivery (LedgerAppenderFailed: the writer retries), and nothing of
    # the batch is appended.
    ledger = Ledger(db)
    dest = appender(tmp_path, url)
    await dest.start()
    lines = [response_line(i) for i in range(3)]
    with pytest.raises(LedgerAppenderFailed):
        await dest.deliver_lines(lines, sync=ranges("not-a-segment"))
    assert ledger.count() == 0
    journal = Journal(tmp_path / "j")
    journal.open()
    for line in lines:
        journal.append(line)
    await dest.deliver_lines(lines, sync=journal.unsynced())
    assert totals(ledger)[0] == 6  # requests + bytes of each response
    journal.close()
    await dest.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_any_body_gets_an_answer(db: Database, body: bytes) -> None:
    ledger = Ledger(db)
    reply = append(ledger, body)
    assert isinstance(reply, Reply)
    if not reply.ok:
        assert reply.error in {"BadFrame", "StorageError", "UnstorableValue", "Conflict"}


@given(body=st.binary(max_size=300))
def test_any_sync_body_gets_an_answer(body: bytes) -> None:
    # Whatever a sync frame holds, the child answers with a Reply (and never fsyncs a file
    # that is not an absolute path of a journal segment).
    assert isinstance(sync(body), Reply)


@given(line=st.binary(max_size=200))
def test_any_answer_is_a_reply_or_a_lost_child(line: bytes) -> None:
    # The parent's side: whatever comes back is a typed Reply or an error deliver turns into
    # LedgerAppenderFailed (and a restarted child), never something else.
    with contextlib.suppress(EOFError, ValueError, msgspec.DecodeError):
        assert isinstance(_reply(line), Reply)


# --- rows per batch through the child (``ledger_granularity = "batch"``, the default) --------

def batch_appender(tmp_path: Path, url: str) -> LedgerProcess:
    return LedgerProcess(load_settings({}, data_dir=str(tmp_path)), url)  # the default


def meter_sums(ledger: Ledger) -> dict[str, int]:
    return {str(m): int(q) for m, q in ledger.db.fetchall(
        "SELECT meter, SUM(quantity) FROM usage_ledger GROUP BY meter")}


async def test_a_child_booking_batches_loses_nothing_and_doubles_nothing_when_killed(
        tmp_path: Path, db: Database, url: str) -> None:
    # The same kills as with rows per response: every batch is booked exactly once, whether
    # the child died before its commit (the batch is delivered again and booked) or after it
    # (delivered again, its rows are there already).
    ledger = Ledger(db)
    assert await record_killing_children(tmp_path, batch_appender(tmp_path, url))
    assert meter_sums(ledger) == {"requests": 600, "bytes": sum(range(1, 601))}
    assert ledger.count() < 600  # a few rows per batch, not two per response
    assert ledger.verify().ok


async def test_a_journal_replay_after_a_booked_batch_books_nothing_twice(
        tmp_path: Path, db: Database, url: str) -> None:
    # The API process killed between the child's commit and the journal's release: at the
    # next start its journal replays those responses as records, through the same child.
    ledger = Ledger(db)
    lines = mixed_lines()
    dest = batch_appender(tmp_path, url)
    try:
        await dest.deliver_lines(lines)
        booked = meter_sums(ledger)
        await dest.deliver_lines(lines)  # the answer lost: the same batch again
        await dest.deliver([r for entry in lines for r in decode_line(entry)])  # the replay
    finally:
        await dest.close()
    per_response = {}
    for r in {r.usage_id: r for entry in lines for r in decode_line(entry)}.values():
        per_response[r.meter] = per_response.get(r.meter, 0) + r.quantity
    assert meter_sums(ledger) == booked == per_response
    assert ledger.verify().ok
