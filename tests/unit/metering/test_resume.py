"""Billing a realtime stream up to the position its client acknowledges by resuming."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from feedserver.metering.ledger import Ledger
from feedserver.metering.resume import (
    Credit,
    EndedStream,
    ResumeCredits,
    Tail,
    continues,
    unread,
    view_key,
)
from feedserver.storage.db import Database

FRAME = struct.Struct("<Hqi")
VIEW = view_key(ndjson=False, partitions=[0, 1], filters=[], fields=[])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 10**12), st.integers(0, 500)),
                max_size=60),
       st.integers(1, 12), st.integers(1, 2000))
def test_tail_keeps_the_newest_frames_within_its_bounds(
        frames: list[tuple[int, int, int]], max_frames: int, max_bytes: int) -> None:
    tail = Tail(max_frames=max_frames, max_bytes=max_bytes)
    for frame in frames:
        tail.add(*frame)
    kept: list[tuple[int, int, int]] = []
    for frame in reversed(frames):  # the reference: newest first while within the bounds
        if kept and (len(kept) == max_frames
                     or sum(f[2] for f in kept) + frame[2] > max_bytes):
            break
        kept.insert(0, frame)
    assert list(FRAME.iter_unpack(tail.frames())) == kept
    assert len(tail) == len(kept)


def test_unread_counts_frames_past_the_acknowledged_position() -> None:
    tail = Tail()
    for partition, next_offset, size in [(0, 5, 10), (1, 3, 20), (0, 6, 30), (1, 4, 40)]:
        tail.add(partition, next_offset, size)
    assert unread(tail.frames(), {0: 5, 1: 3}) == (2, 70)
    assert unread(tail.frames(), {0: 6, 1: 4}) == (0, 0)  # read everything
    assert unread(tail.frames(), {0: 0, 1: 0}) == (4, 100)
    assert unread(tail.frames(), {0: 5}) == (1, 30)  # partition 1 not acknowledged


def test_a_resume_continues_a_stream_only_inside_its_range() -> None:
    start, end = {0: 10, 1: 10}, {0: 20, 1: 15}
    assert continues(start, end, {0: 12, 1: 15})
    assert continues(start, end, {0: 10, 1: 10})
    assert not continues(start, end, {0: 9, 1: 12})  # before the stream started
    assert not continues(start, end, {0: 21, 1: 12})  # past what it delivered
    assert not continues(start, end, {0: 12})  # does not name every partition


def _stream(stream_id: str, clock: Clock) -> tuple[EndedStream, bytes]:
    tail = Tail()
    for offset in range(10):  # 10 events per partition, 100 bytes each
        tail.add(0, offset + 1, 100)
        tail.add(1, offset + 1, 100)
    return EndedStream(stream_id=stream_id, customer_id="acme", api_key_id="k", user="",
                       viewer=VIEW, started=clock.now - 60, start_positions={0: 0, 1: 0},
                       end_positions={0: 10, 1: 10}), tail.frames()


def test_resume_after_the_stream_ended_credits_the_unread_tail_once(db: Database) -> None:
    clock = Clock()
    credits = ResumeCredits(db, clock=clock)
    stream, frames = _stream("s1", clock)
    assert credits.stream_ended(stream, frames) == []  # nobody resumed yet
    clock.now += 5
    got = credits.resumed(stream_id="s2", customer_id="acme", viewer=VIEW,
                          positions={0: 4, 1: 6}, request_id="corr")
    assert [(c.stream_id, c.events, c.bytes) for c in got] == [("s1", 10, 1000)]
    credits.settle(got)
    # The first resume settles the stream: a later one (even from further back) credits nothing.
    assert credits.resumed(stream_id="s3", customer_id="acme", viewer=VIEW,
                           positions={0: 0, 1: 0}) == []


def test_resume_while_the_stream_is_still_open_is_found_when_it_ends(db: Database) -> None:
    clock = Clock()
    credits = ResumeCredits(db, clock=clock)
    stream, frames = _stream("s1", clock)
    assert credits.resumed(stream_id="s2", customer_id="acme", viewer=VIEW,
                           positions={0: 8, 1: 10}) == []
    got = credits.stream_ended(stream, frames)
    assert [(c.stream_id, c.events, c.bytes) for c in got] == [("s1", 2, 200)]


def test_other_views_customers_and_ranges_are_never_credited(db: Database) -> None:
    clock = Clock()
    credits = ResumeCredits(db, clock=clock)
    stream, frames = _stream("s1", clock)
    credits.stream_ended(stream, frames)
    other_view = view_key(ndjson=True, partitions=[0, 1], filters=[], fields=[])
    assert credits.resumed(stream_id="a", customer_id="acme", viewer=other_view,
                           positions={0: 0, 1: 0}) == []
    assert credits.resumed(stream_id="b", customer_id="globex", viewer=VIEW,
                           positions={0: 0, 1: 0}) == []
    assert credits.resumed(stream_id="c", customer_id="acme", viewer=VIEW,
                           positions={0: 11, 1: 3}) == []  # not inside s1's range
    # A fully acknowledged stream is settled with a zero credit.
    zero = credits.resumed(stream_id="d", customer_id="acme", viewer=VIEW,
                           positions={0: 10, 1: 10})
    assert [(c.events, c.bytes, c.records(datetime.now(UTC))) for c in zero] == [(0, 0, [])]


def test_tails_are_forgotten_after_the_retention(db: Database) -> None:
    clock = Clock()
    credits = ResumeCredits(db, clock=clock)
    stream, frames = _stream("s1", clock)
    credits.stream_ended(stream, frames)
    clock.now += 2 * 24 * 3600
    assert credits.resumed(stream_id="s2", customer_id="acme", viewer=VIEW,
                           positions={0: 0, 1: 0}) == []


def test_a_repeated_credit_reaches_the_ledger_once(db: Database) -> None:
    credit = Credit(stream_id="s1", customer_id="acme", api_key_id="k", user="", events=3,
                    bytes=300)
    ts = datetime(2026, 11, 5, tzinfo=UTC)
    ledger = Ledger(db)
    assert ledger.append(credit.records(ts)) == 2
    assert ledger.append(credit.records(ts)) == 0  # a crash before settling repeats it
    assert db.fetchall("SELECT meter, quantity FROM usage_ledger ORDER BY meter") == [
        ("bytes", -300), ("stream_events", -3)]
    used = db.fetchone("SELECT used FROM quota_usage WHERE meter = 'bytes'")
    assert used == (-300,)  # the bytes quota gets the credit too
    assert ledger.verify().ok
