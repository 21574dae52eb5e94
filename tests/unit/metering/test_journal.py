from __future__ import annotations

import fcntl
import mmap
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from feedserver.metering.journal import (
    AHEAD_BYTES,
    Journal,
    claim,
    decode_line,
    parse_segment,
    sync_range,
)
from feedserver.metering.prefault import Ahead
from feedserver.metering.records import UsageRecord, merge
from tests.unit.metering.conftest import old_line, rec, response_line, response_of
from tests.unit.metering.test_prefault import dirty, resident


def ids(records: Iterable[UsageRecord]) -> list[str]:
    return [r.usage_id for r in records]


def test_append_release_deletes_finished_segments(tmp_path: Path) -> None:
    j = Journal(tmp_path, segment_bytes=1)  # rotate after every release
    j.open()
    first = j.append(response_line(1))
    second = j.append(response_line(2))
    j.sync()
    assert first == second and j.pending() == 2  # one line per response
    j.release({first: 1})
    assert j.pending() == 1  # the segment rotated but still holds response 2
    j.release({second: 1})
    assert j.pending() == 0
    j.close()
    assert list(tmp_path.iterdir()) == []


def test_torn_tail_and_garbage_are_ignored() -> None:
    good = b'{"usage_id":"a","ts":"2026-11-01T00:00:00Z","customer_id":"c","meter":"bytes",' \
           b'"quantity":1,"feed":"chunks"}\n'
    records, bad, torn = parse_segment(good + b"not json\n" + good[:30])
    assert (len(records), bad, torn) == (1, 1, True)
    assert parse_segment(b"") == ([], 0, False)
    # the same for a response's line: torn mid-write it is no record at all
    new = response_line(1)
    records, bad, torn = parse_segment(new + b"[1, 2]\n" + new[:-5])
    assert (records, bad, torn) == (response_of(1), 1, True)


def test_a_response_line_is_its_records_and_an_old_line_is_one_record() -> None:
    assert decode_line(response_line(3, resource="chunk@1")) == response_of(3, resource="chunk@1")
    assert decode_line(response_line(3)[:-1]) == response_of(3)  # with or without newline
    assert decode_line(old_line(rec(4))) == [rec(4)]


@pytest.mark.parametrize("bad", [
    b'["response",-1,"c",null,null,{"feed":"chunks","project":null,"response_id":"r"}]',
    b'["response",1,"c",null,null,{"feed":"chunks","project":null,"response_id":""}]',
    b'["response",99999999999999999999,"c",null,null,{"feed":"chunks","project":null,'
    b'"response_id":"r"}]',
    b'["response",9223372036854775808,"c",null,null,{"feed":"chunks","project":null,'
    b'"response_id":"r"}]',
    b'["response",1,"c",null,null,{"feed":"chunks","project":null,"response_id":"r",'
    b'"bytes_sent":"many"}]',
    b'["response",1,"c",null,null]',
    b'["other",1,"c",null,null,{"feed":"chunks","project":null,"response_id":"r"}]',
    b'["response",1,"c",null,null,{"feed":"nope","project":null,"response_id":"r"}]',
])
def test_a_hostile_line_is_skipped_and_counted_never_an_exception(bad: bytes) -> None:
    # An edited or corrupted segment must not stop recovery (nor the server's start): such a
    # line is counted as undecodable, like garbage, and the others are recovered.
    records, skipped, torn = parse_segment(response_line(1) + bad + b"\n")
    assert (records, skipped, torn) == (response_of(1), 1, False)


def _write_segment(directory: Path, name: str, data: bytes) -> None:
    # What a dead process leaves: its lines, then the zeros of the mapped file's rest.
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data + bytes(4096))


def test_segments_written_before_one_line_per_response_are_recovered(tmp_path: Path) -> None:
    # A server upgraded after a crash finds segments of one usage record per line.
    old = [r for n in (1, 2) for r in response_of(n)]
    _write_segment(tmp_path, "1-1-1.journal", b"".join(old_line(r) for r in old))
    recovered = Journal(tmp_path).recover()
    assert recovered.records == old
    assert (recovered.skipped_lines, recovered.torn_tail) == (0, 0)


def test_old_new_and_mixed_segments_are_recovered_together(tmp_path: Path) -> None:
    # An old segment, a new one, and one holding both kinds of line (records of one response
    # journaled in both forms, a checkpoint included): ids agree, so each record comes out
    # once, the largest (cumulative) quantity winning.
    _write_segment(tmp_path, "1-1-1.journal",
                   b"".join(old_line(r) for r in response_of(1, bytes_sent=5)))
    _write_segment(tmp_path, "2-2-1.journal", response_line(2) + response_line(3, bytes_sent=7))
    _write_segment(tmp_path, "3-3-1.journal",
                   response_line(1, bytes_sent=9) + old_line(rec(4))
                   + b"".join(old_line(r) for r in response_of(3, bytes_sent=3)))
    recovered = Journal(tmp_path).recover()
    expected = merge([*response_of(1, bytes_sent=9), *response_of(2),
                      *response_of(3, bytes_sent=7), rec(4)])
    assert sorted(ids(recovered.records)) == sorted(ids(expected))
    assert {r.usage_id: r.quantity for r in recovered.records} \
        == {r.usage_id: r.quantity for r in expected}
    assert len(recovered.segments) == 3 and recovered.skipped_lines == 0


def test_live_segments_are_not_recovered(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    live.open()
    live.append(response_line(1))
    other = Journal(tmp_path)
    assert other.recover().records == []
    live.close(delete_if_empty=False)
    recovered = other.recover()
    assert recovered.records == response_of(1)
    other.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_segment_gone_or_held_is_not_claimed(tmp_path: Path) -> None:
    # Workers share the journal directory and start together: a segment listed by one can be
    # deleted by a sibling (committed, or recovered and discarded) before it is opened. CI saw
    # that kill a worker's start-up with FileNotFoundError; it is simply not ours to recover.
    assert claim(tmp_path / "gone.journal") is None
    live = Journal(tmp_path)
    live.open()
    (segment,) = live._segments.values()
    assert claim(segment.path) is None  # a live process holds it
    live.close(delete_if_empty=False)
    fd = claim(segment.path)
    assert fd is not None
    os.close(fd)


def test_a_segment_deleted_between_open_and_lock_is_not_claimed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The other interleaving of the same race (a stress run of the suite hit it): a sibling
    # recovered the segment, committed it and discarded it (unlink, then unlock) just after
    # our open and before our lock. The lock is then ours, on a file that no longer exists:
    # its records are in the ledger, so claiming it would read them again.
    _write_segment(tmp_path, "1-1-1.journal", response_line(1))
    path = tmp_path / "1-1-1.journal"
    real_flock = fcntl.flock

    def sibling_discards_first(fd: int, operation: int) -> None:
        path.unlink(missing_ok=True)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", sibling_discards_first)
    assert claim(path) is None
    monkeypatch.undo()
    assert Journal(tmp_path).recover().records == []


def _recover_alongside(directory: Path, recoverers: int, rotations: int,
                       live: Journal) -> tuple[list[str], list[BaseException]]:
    """``recoverers`` threads recover ``directory`` at once (flock is per open file, so
    threads contend as processes do) while ``live`` rotates; their records and errors."""
    start = threading.Barrier(recoverers + 1)
    got: list[str] = []
    errors: list[BaseException] = []

    def recover() -> None:
        start.wait(timeout=30)
        try:
            j = Journal(directory)
            got.extend(ids(j.recover().records))
            j.discard()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=recover) for _ in range(recoverers)]
    for t in threads:
        t.start()
    start.wait(timeout=30)
    for _ in range(rotations):
        live._rotate()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return got, errors


def test_concurrent_recoveries_and_a_live_journal_take_each_segment_once(
        tmp_path: Path) -> None:
    # Workers start together and each recovers the shared directory while the others already
    # append and rotate. Four recoverers and one live journal rotating: every dead segment's
    # records are recovered exactly once, none of the live journal's, and nobody fails (the
    # old code failed here with FileNotFoundError, as a stress run of the suite did).
    dead = 12
    for r in range(10):
        directory = tmp_path / str(r)
        for n in range(dead):
            _write_segment(directory, f"{n}-1-1.journal", response_line(n))
        live = Journal(directory)
        live.open()
        live.append(response_line(10_000))
        got, errors = _recover_alongside(directory, 4, 20, live)
        assert errors == []
        assert sorted(got) == sorted(ids(r for n in range(dead) for r in response_of(n)))
        assert live.pending() == 1
        live.close(delete_if_empty=True)


def test_a_segment_abandoned_while_being_made_is_removed_once_old(tmp_path: Path) -> None:
    # A segment is made as ``<name>.journal.new`` and renamed once locked, so recovery never
    # sees one that is being made. One whose maker died before the rename holds no record:
    # recovery deletes it once it is old, and leaves a young one (its maker may be between
    # creating and locking it).
    old, young = tmp_path / "1-1-1.journal.new", tmp_path / "2-2-1.journal.new"
    old.write_bytes(bytes(4096))
    young.write_bytes(bytes(4096))
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    recovered = Journal(tmp_path).recover()
    assert recovered.records == [] and recovered.segments == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [young.name]


def test_a_dead_process_mapped_segment_is_recovered_without_its_zero_tail(
        tmp_path: Path) -> None:
    # Appends are copies into a mapped, sparse segment: a process that dies leaves the file
    # at its mapped size, zeros after the last record. Recovery reads the records, and the
    # zeros are neither garbage nor a torn tail.
    j = Journal(tmp_path)
    j.open()
    j.append(response_line(1))
    j.append(response_line(2))
    j.append(response_line(3))
    (segment,) = j._segments.values()
    written = segment.map.tell()
    killed(j)
    assert segment.path.stat().st_size > written
    recovered = Journal(tmp_path).recover()
    assert recovered.records == [r for n in (1, 2, 3) for r in response_of(n)]
    assert (recovered.skipped_lines, recovered.torn_tail) == (0, 0)


def test_a_full_segment_rotates_on_append(tmp_path: Path) -> None:
    j = Journal(tmp_path, segment_bytes=1)
    j.open()
    first = j.append(response_line(1))
    (segment,) = j._segments.values()
    segment.map.seek(segment.capacity - 10)  # as if nearly full
    second = j.append(response_line(2))
    assert second != first and j.pending() == 2
    j.release({first: 1, second: 1})
    j.close()
    assert list(tmp_path.iterdir()) == []


def test_sync_fsyncs_what_was_written_since_the_last_sync(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    j.append(response_line(1))
    (segment,) = j._segments.values()
    assert segment.synced == 0
    j.sync()
    assert segment.synced == segment.map.tell() > 0
    j.append(response_line(2))
    j.sync()
    assert segment.synced == segment.map.tell()
    j.close(delete_if_empty=False)
    with pytest.raises(RuntimeError):
        j.append(response_line(3))  # closed: an error, never a write into a closed mapping


def test_a_segment_owns_its_disk_blocks_before_the_first_append(tmp_path: Path) -> None:
    # Appends are stores into a mapping: a page the disk could not back would be a SIGBUS that
    # kills the server. Blocks allocated at creation make a full disk an error at rotation.
    journal = Journal(tmp_path, segment_bytes=1024)
    journal.open()
    (segment,) = tmp_path.glob("*.journal")
    stat = segment.stat()
    assert stat.st_size >= 1024 * 1024
    assert stat.st_blocks * 512 >= stat.st_size
    journal.close()


def settled(j: Journal) -> None:
    """Wait for the populating thread's work so far (one thread: its queue runs in order)."""
    if j._populator is not None:
        j._populator.submit(lambda: None).result(timeout=30)


def killed(j: Journal) -> None:
    """What a kill -9 does to the journal's process: its threads stop, its mappings and
    flocks go, the pages stay in the page cache. (A populate still running holds the file
    until it returns: a real death ends it with the process.)"""
    settled(j)
    for segment in j._segments.values():
        segment.map.close()
        os.close(segment.fd)


@pytest.mark.skipif(not Ahead.supported, reason="no MADV_POPULATE_WRITE here")
def test_appends_find_their_pages_populated_and_a_sync_leaves_those_ahead_writable(
        tmp_path: Path) -> None:
    # The event loop's appends must not fault (docs/metering.md, "Appends without page
    # faults"): the journal's own thread populates the pages after the tail, and a sync
    # writes back the range written only. An fsync of the file would clean (write-protect)
    # the populated pages too, and every one of them would fault again: shown at the end.
    j = Journal(tmp_path)
    j.open()
    j.append(response_line(1))
    (segment,) = j._segments.values()
    settled(j)
    tail = segment.map.tell()
    # populated when the segment was made, before its first append
    assert resident(segment.path) >= AHEAD_BYTES and dirty(segment.path) >= AHEAD_BYTES
    assert segment.refill_at == AHEAD_BYTES // 2 < segment.populated == AHEAD_BYTES
    [written] = j.unsynced()
    sync_range(segment.fd, written.start, written.upto)
    j.synced([written])
    assert dirty(segment.path) >= AHEAD_BYTES - 2 * mmap.PAGESIZE  # still writable
    assert segment.map[tail:tail + AHEAD_BYTES] == bytes(AHEAD_BYTES)  # no byte changed
    half = segment.refill_at
    while segment.map.tell() < half:  # half of it used: the next half is populated
        j.append(response_line(2))
    now = segment.map.tell()
    assert segment.populated == now + AHEAD_BYTES
    assert segment.refill_at == now + AHEAD_BYTES // 2
    settled(j)
    assert dirty(segment.path) >= now - tail + AHEAD_BYTES - mmap.PAGESIZE
    os.fsync(segment.fd)
    assert dirty(segment.path) == 0
    j.close()


def test_a_batch_boundary_moves_the_appends_to_a_fresh_page(tmp_path: Path) -> None:
    # The page a sync's range ends in is cleaned by that sync; appends after it start on the
    # next page, so no append writes (and faults on) a cleaned page. The zeros skipped are
    # nothing to sync and nothing to recover.
    j = Journal(tmp_path)
    j.open()
    j.append(response_line(1))
    (segment,) = j._segments.values()
    [written] = j.unsynced()
    assert written.upto < mmap.PAGESIZE == segment.map.tell()
    j.append(response_line(2))
    j.synced([written])
    [second] = j.unsynced()
    assert (second.start, second.upto) == (mmap.PAGESIZE,
                                           mmap.PAGESIZE + len(response_line(2)))
    assert segment.map.tell() == 2 * mmap.PAGESIZE
    j.synced([second])
    assert j.unsynced() == []
    killed(j)
    recovered = Journal(tmp_path).recover()
    assert recovered.records == [*response_of(1), *response_of(2)]
    assert (recovered.skipped_lines, recovered.torn_tail) == (0, 0)


def test_sync_range_is_clamped_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    path.write_bytes(b"x" * 100)
    fd = os.open(path, os.O_RDWR)
    try:
        sync_range(fd, 0, 10**40)  # past the end: up to it
        sync_range(fd, 50, 50)  # empty: nothing
        sync_range(fd, 10**40, 10**40 + 1)  # past the end: nothing
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100


def test_a_closed_segment_is_not_populated(tmp_path: Path) -> None:
    # A populate the thread runs after the journal closed (queued before it) touches nothing.
    j = Journal(tmp_path)
    j.open()
    (segment,) = j._segments.values()
    j.close()
    assert segment.ahead.populate(0, AHEAD_BYTES) == 0
