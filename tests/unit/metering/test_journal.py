from __future__ import annotations

import os
from pathlib import Path

from feedserver.metering.journal import Journal, parse_segment
from tests.unit.metering.conftest import rec


def test_append_release_deletes_finished_segments(tmp_path: Path) -> None:
    j = Journal(tmp_path, segment_bytes=1)  # rotate after every release
    j.open()
    first = j.append([rec(1), rec(2)])
    second = j.append([rec(3)])
    j.sync()
    assert first == second and j.pending() == 3
    j.release({first: 2})
    assert j.pending() == 1  # the segment rotated but still holds rec 3
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


def test_live_segments_are_not_recovered(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    live.open()
    live.append([rec(1)])
    other = Journal(tmp_path)
    assert other.recover().records == []
    live.close(delete_if_empty=False)
    recovered = other.recover()
    assert [r.usage_id for r in recovered.records] == [rec(1).usage_id]
    other.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_dead_process_mapped_segment_is_recovered_without_its_zero_tail(
        tmp_path: Path) -> None:
    # Appends are copies into a mapped, sparse segment: a process that dies leaves the file
    # at its mapped size, zeros after the last record. Recovery reads the records, and the
    # zeros are neither garbage nor a torn tail.
    j = Journal(tmp_path)
    j.open()
    j.append([rec(1), rec(2)])
    j.append([rec(3)])
    (segment,) = j._segments.values()
    segment.map.close()  # what the kernel does to a killed process: the pages stay in the
    os.close(segment.fd)  # page cache, the mapping and the flock go
    assert segment.path.stat().st_size > segment.size
    recovered = Journal(tmp_path).recover()
    assert [r.usage_id for r in recovered.records] == [rec(i).usage_id for i in (1, 2, 3)]
    assert (recovered.skipped_lines, recovered.torn_tail) == (0, 0)


def test_a_full_segment_rotates_on_append(tmp_path: Path) -> None:
    j = Journal(tmp_path, segment_bytes=1)
    j.open()
    first = j.append([rec(1)])
    (segment,) = j._segments.values()
    segment.size = segment.capacity - 10  # as if nearly full
    second = j.append([rec(2)])
    assert second != first and j.pending() == 2
    j.release({first: 1, second: 1})
    j.close()
    assert list(tmp_path.iterdir()) == []


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
