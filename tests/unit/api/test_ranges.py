from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.api import ranges
from feedserver.api.ranges import ByteRange, Part, Segment
from feedserver.errors import BadRequest, RangeNotSatisfiable


@pytest.mark.parametrize(("header", "want"), [
    ("bytes=0-9", [ByteRange(0, 10)]),
    ("bytes=5-", [ByteRange(5, 100)]),
    ("bytes=-10", [ByteRange(90, 100)]),
    ("bytes=-1000", [ByteRange(0, 100)]),
    ("bytes=90-1000", [ByteRange(90, 100)]),
    ("bytes=0-9, 20-29", [ByteRange(0, 10), ByteRange(20, 30)]),
    ("bytes=20-29,0-9", [ByteRange(0, 10), ByteRange(20, 30)]),
    ("bytes=0-9,5-14,15-19", [ByteRange(0, 20)]),  # overlapping and adjacent coalesce
    ("bytes=0-9,200-300", [ByteRange(0, 10)]),  # unsatisfiable parts dropped
    ("BYTES = 1-1", [ByteRange(1, 2)]),
    # positions longer than any 64-bit size still have their RFC 9110 meaning
    ("bytes=0-99999999999999999999999999", [ByteRange(0, 100)]),
    ("bytes=-99999999999999999999999999", [ByteRange(0, 100)]),
    ("bytes=000000000000000000000000000001-2", [ByteRange(1, 3)]),
])
def test_parse_valid(header: str, want: list[ByteRange]) -> None:
    assert ranges.parse_range(header, 100) == want


@pytest.mark.parametrize("header", [
    "bytes", "bytes=", "bytes=abc", "bytes=5-3", "items=0-5", "bytes=-", "bytes=1-2-3",
    "bytes=0x1-2", "bytes=0-9,x", "bytes=\uff11-\uff12", "bytes=\u0663-",
    "bytes=99999999999999999999-99999999999999999998",  # last before first, exactly compared
])
def test_malformed_is_ignored(header: str) -> None:
    assert ranges.parse_range(header, 100) is None


def test_none_header() -> None:
    assert ranges.parse_range(None, 100) is None


@pytest.mark.parametrize("header", [
    "bytes=100-", "bytes=500-600", "bytes=-0", "bytes=100-,200-",
    # a start past the end is past it however long: 416, never the whole body served (and
    # billed) as if the header were malformed
    "bytes=99999999999999999999999999-", "bytes=" + "9" * 1000 + "-",
])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as err:
        ranges.parse_range(header, 100)
    assert err.value.extra["size"] == 100


# A position: small, near a 64-bit size, or longer than any (digits, leading zeros included).
_positions = st.one_of(st.integers(0, 300), st.integers(2**63 - 2, 2**63 + 2),
                       st.integers(10**19, 10**60)).map(str) \
    | st.from_regex(r"\A0{1,30}[0-9]{0,3}\Z")
_specs = st.one_of(
    st.tuples(_positions, st.just("")),  # first-
    st.tuples(_positions, _positions),  # first-last
    st.tuples(st.just(""), _positions),  # -suffix
)


@given(specs=st.lists(_specs, min_size=1, max_size=ranges.MAX_RANGES), size=st.integers(0, 200))
def test_ranges_serve_exactly_the_bytes_asked_for(specs: list[tuple[str, str]],
                                                  size: int) -> None:
    """Against a model made of byte positions, not intervals: the answer covers exactly the
    positions below ``size`` that some spec names, in order and without repeats; a spec
    whose last precedes its first makes the header ignored; none named is 416."""
    header = "bytes=" + ",".join(f"{first}-{last}" for first, last in specs)
    named: set[int] = set()
    for first, last in specs:
        if first and last and int(last) < int(first):
            assert ranges.parse_range(header, size) is None
            return
        if first:
            named.update(range(int(first), min(int(last) + 1, size) if last else size))
        else:
            named.update(range(max(0, size - int(last)), size))
    named = {i for i in named if i < size}
    if not named:
        with pytest.raises(RangeNotSatisfiable):
            ranges.parse_range(header, size)
        return
    got = ranges.parse_range(header, size)
    assert got is not None
    served = [i for r in got for i in range(r.start, r.stop)]
    assert served == sorted(named)
    # coalesced: no two ranges touch, so a multipart body never repeats or splits a run
    assert all(a.stop < b.start for a, b in pairwise(got))


def test_empty_representation_is_unsatisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        ranges.parse_range("bytes=-5", 0)


@pytest.mark.parametrize("header", [
    "bytes=" + ",".join(f"{i}-{i}" for i in range(ranges.MAX_RANGES + 1)),
    "bytes=0-1" + " " * ranges.MAX_HEADER,
])
def test_hostile_is_refused(header: str) -> None:
    with pytest.raises(BadRequest):
        ranges.parse_range(header, 1000)


def test_segments_span_parts() -> None:
    parts = [Part("a", 0, 10), Part("b", 10, 5), Part("c", 15, 20)]
    assert ranges.segments(parts, ByteRange(8, 17)) == [
        Segment("a", 8, 10), Segment("b", 0, 5), Segment("c", 0, 2)]
    assert ranges.segments(parts, ByteRange(0, 35)) == [
        Segment("a", 0, 10), Segment("b", 0, 5), Segment("c", 0, 20)]
    assert ranges.segments(parts, ByteRange(10, 15)) == [Segment("b", 0, 5)]


def test_conditionals() -> None:
    etag = ranges.strong_etag("ab" * 32)
    assert ranges.none_match(etag, etag)
    assert ranges.none_match(f'"x", W/{etag}', etag)
    assert ranges.none_match("*", etag)
    assert not ranges.none_match('"other"', etag)
    assert not ranges.none_match(None, etag)
    when = datetime(2024, 5, 1, 10, 0, 0, 123, tzinfo=UTC)
    assert ranges.if_range_allows(None, etag, when)
    assert ranges.if_range_allows(etag, etag, when)
    assert not ranges.if_range_allows(f"W/{etag}", etag, when)  # If-Range needs a strong tag
    assert not ranges.if_range_allows('"stale"', etag, when)
    assert ranges.if_range_allows(ranges.http_date(when), etag, when)
    assert not ranges.if_range_allows("Tue, 30 Apr 2024 10:00:00 GMT", etag, when)
    assert not ranges.if_range_allows("garbage", etag, when)


def test_multipart_length_matches_layout() -> None:
    rngs = [ByteRange(0, 10), ByteRange(20, 25)]
    layout = ranges.multipart(rngs, 100, "application/zstd", "b0undary")
    body = layout.heads[0] + b"x" * 10 + layout.heads[1] + b"y" * 5 + layout.tail
    assert len(body) == layout.length
    assert body.startswith(b"--b0undary\r\nContent-Type: application/zstd\r\n"
                           b"Content-Range: bytes 0-9/100\r\n\r\n")
    assert body.endswith(b"\r\n--b0undary--\r\n")


def test_digest_headers() -> None:
    h = ranges.digest_headers("00" * 32)
    assert h["Repr-Digest"] == "sha-256=:" + "A" * 43 + "=:"
