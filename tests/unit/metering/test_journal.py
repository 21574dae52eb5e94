from __future__ import annotations

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
