"""The realtime billing rule: each event at most once per customer and view."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feedserver.metering.realtime_billing import (
    BilledRanges,
    Covered,
    Edges,
    billable,
    pack_frame,
    stream_ranges,
    view_key,
)
from feedserver.storage.db import Database

VIEW = view_key(ndjson=False, filters=[], fields=[])
frames_st = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**12), st.integers(0, 500)),
                     max_size=60)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@given(frames_st, st.integers(1, 12), st.integers(1, 2000))
def test_edges_keep_the_first_and_last_frames_each_once(
        frames: list[tuple[int, int, int]], max_frames: int, max_bytes: int) -> None:
    edges = Edges(max_frames=max_frames, max_bytes=max_bytes)
    for frame in frames:
        edges.add(*frame)
    kept = list(edges.frames())
    head: list[tuple[int, int, int]] = []
    for frame in frames:  # the reference head: the first frames within the bounds
        if head and (len(head) == max_frames or sum(f[2] for f in head) + frame[2] > max_bytes):
            break
        head.append(frame)
    tail: list[tuple[int, int, int]] = []
    for frame in reversed(frames[len(head):]):  # the reference tail: the last ones
        if tail and (len(tail) == max_frames or sum(f[2] for f in tail) + frame[2] > max_bytes):
            break
        tail.insert(0, frame)
    assert kept == head + tail


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(0, 40)),
                max_size=8),
       st.integers(0, 2), st.integers(0, 50))
def test_covered_is_the_union_of_the_ranges(spans: list[tuple[int, int, int]],
                                            partition: int, offset: int) -> None:
    covered = Covered([{p: (a, b)} for p, a, b in spans])
    expected = any(p == partition and a <= offset < b for p, a, b in spans)
    assert ((partition, offset) in covered) == expected


def test_a_stream_does_not_bill_what_an_earlier_one_billed() -> None:
    edges = Edges()
    for offset in range(100, 110):  # re-delivered 100..104 (billed before), new 105..109
        edges.add(0, offset, 10)
    covered = Covered([{0: (0, 105), 1: (0, 50)}])
    assert billable(10, 100, edges, covered) == (5, 50)
    assert billable(10, 100, edges, Covered()) == (10, 100)


def test_stream_ranges_are_what_was_delivered() -> None:
    assert stream_ranges({0: 5, 1: 7, 2: 9}, {0: 12, 1: 7, 2: 9}) == {0: (5, 12)}
    assert stream_ranges({}, {3: 4}) == {}  # nothing delivered in partition 3


def test_ranges_are_per_customer_and_view_and_forgotten_after_a_day(db: Database) -> None:
    clock = Clock()
    billed = BilledRanges(db, clock=clock)
    billed.ended("s1", "acme", VIEW, {0: (0, 100), 1: (10, 20)})
    assert (0, 50) in billed.covered("acme", VIEW)
    assert (1, 20) not in billed.covered("acme", VIEW)
    assert (0, 50) not in billed.covered("globex", VIEW)
    ndjson = view_key(ndjson=True, filters=[], fields=[])
    assert (0, 50) not in billed.covered("acme", ndjson)
    billed.ended("s1", "acme", VIEW, {0: (0, 100)})  # a repeat is harmless
    clock.now += 2 * 24 * 3600
    assert (0, 50) not in billed.covered("acme", VIEW)


@given(frames_st, st.lists(st.integers(1, 7), max_size=30), st.integers(1, 12),
       st.integers(1, 2000))
def test_edges_keep_the_same_frames_when_they_arrive_in_runs(
        frames: list[tuple[int, int, int]], runs: list[int], max_frames: int,
        max_bytes: int) -> None:
    # Streams hand whole written batches over (one packed run each, shared between streams of
    # one view); what is remembered must not depend on how the frames were grouped.
    one = Edges(max_frames=max_frames, max_bytes=max_bytes)
    grouped = Edges(max_frames=max_frames, max_bytes=max_bytes)
    for frame in frames:
        one.add(*frame)
    at = 0
    for length in [*runs, len(frames)]:
        run = frames[at:at + length]
        at += len(run)
        grouped.add_frames(b"".join(pack_frame(*f) for f in run), len(run),
                           sum(f[2] for f in run))
    assert list(grouped.frames()) == list(one.frames())


def test_edges_stay_bounded_under_a_trickle_of_single_frames() -> None:
    # A quiet stream writes one frame per batch for hours: its runs are joined, never kept
    # one object per frame.
    edges = Edges(max_frames=100, max_bytes=10**9)
    for offset in range(5000):
        edges.add_frames(pack_frame(0, offset, 10), 1, 10)
    kept = list(edges.frames())
    assert [f[1] for f in kept] == [*range(100), *range(4900, 5000)]
    assert len(edges._tail) <= 257 and len(edges._head) <= 257
