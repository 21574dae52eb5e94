"""Pure HTTP Range / conditional-request logic (RFC 9110 §13, §14), no I/O.

Decisions (see ``docs/api.md``):

* A ``Range`` header that is syntactically malformed, or uses a unit other than ``bytes``, is
  ignored and the whole representation is served (RFC 9110 §14.2 allows this; it is what
  nginx and most caches do).
* Positions are numbers of any length (RFC 9110 §14.1.1 sets no bound), compared exactly: a
  first position past the end is unsatisfiable however many digits it has, a last position
  past the end means the end, a suffix longer than the representation means all of it.
  ``MAX_HEADER`` bounds the digits far below what ``int()`` refuses to convert (4,300).
* A well-formed header asking for more than ``MAX_RANGES`` ranges, or longer than
  ``MAX_HEADER``, is treated as hostile (range amplification) and refused with 400.
* Overlapping or adjacent ranges are coalesced, in ascending order (RFC 9110 allows it), so
  a multipart body never repeats bytes.
* No satisfiable range at all → 416 with ``Content-Range: bytes */size``.
* ``If-Range`` is honoured with a strong ETag or the exact ``Last-Modified`` date; anything
  else makes the Range ignored. ``If-None-Match`` uses the weak comparison (→ 304).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import NamedTuple

from feedserver.errors import BadRequest, RangeNotSatisfiable

MAX_RANGES = 16
MAX_HEADER = 1024
_SPEC = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*\Z")  # ASCII digits only


class ByteRange(NamedTuple):
    """Half-open ``[start, stop)`` byte interval."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class Segment(NamedTuple):
    """A slice ``[start, stop)`` of one part of a composed download: a stored blob (``key``)
    or literal bytes (``data``)."""

    key: str
    start: int
    stop: int
    data: bytes = b""


class Part(NamedTuple):
    """``size`` bytes at ``offset`` of a download: the blob ``key``, or, when ``data`` is set,
    those bytes themselves (a WME archive's rebuilt tar headers and end blocks)."""

    key: str
    offset: int
    size: int
    data: bytes = b""


def parse_range(header: str | None, size: int) -> list[ByteRange] | None:
    """Ranges to serve, or None to serve the whole representation.

    Raises ``RangeNotSatisfiable`` (416) or ``BadRequest`` (400, hostile header).
    """
    if header is None:
        return None
    if len(header) > MAX_HEADER:
        raise BadRequest("Range header too long")
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    raw = specs.split(",")
    if len(raw) > MAX_RANGES:
        raise BadRequest(f"at most {MAX_RANGES} ranges per request")
    wanted: list[ByteRange] = []
    for spec in raw:
        m = _SPEC.match(spec)
        if m is None:
            return None
        first, last = m.group(1), m.group(2)
        if not first and not last:
            return None
        if not first:  # suffix: the last N bytes
            n = int(last)
            if n == 0 or size == 0:
                continue
            wanted.append(ByteRange(max(0, size - n), size))
            continue
        start = int(first)
        stop = size if not last else int(last) + 1
        if last and int(last) < start:
            return None  # "5-3" is invalid syntax: ignore the whole header
        if start >= size:
            continue
        wanted.append(ByteRange(start, min(stop, size)))
    if not wanted:
        raise RangeNotSatisfiable(f"no satisfiable range in {header!r} (size {size})", size=size)
    return coalesce(wanted)


def coalesce(ranges: Sequence[ByteRange]) -> list[ByteRange]:
    out: list[ByteRange] = []
    for r in sorted(ranges):
        if out and r.start <= out[-1].stop:
            out[-1] = ByteRange(out[-1].start, max(out[-1].stop, r.stop))
        else:
            out.append(r)
    return out


def segments(parts: Sequence[Part], rng: ByteRange) -> list[Segment]:
    """Which slices of which parts make up ``rng`` of the parts laid back to back."""
    out: list[Segment] = []
    for part in parts:
        lo = max(rng.start, part.offset)
        hi = min(rng.stop, part.offset + part.size)
        if lo < hi:
            out.append(Segment(part.key, lo - part.offset, hi - part.offset, part.data))
    return out


def strong_etag(sha256_hex: str) -> str:
    return f'"sha256:{sha256_hex}"'


def digest_headers(sha256_hex: str) -> dict[str, str]:
    b64 = base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")
    # Repr-Digest (RFC 9530) describes the whole representation, so it is right on 206 too;
    # Digest (RFC 3230) is the older header some download tools still read.
    return {"Repr-Digest": f"sha-256=:{b64}:", "Digest": f"sha-256={b64}"}


def http_date(when: datetime) -> str:
    return format_datetime(when.replace(microsecond=0), usegmt=True)


def _etags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def none_match(header: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` matches (weak comparison): answer 304."""
    if header is None:
        return False
    tags = _etags(header)
    if "*" in tags:
        return True
    bare = etag.removeprefix("W/")
    return any(t.removeprefix("W/") == bare for t in tags)


def if_range_allows(header: str | None, etag: str, last_modified: datetime) -> bool:
    """False when ``If-Range`` is present and does not validate: serve the full body."""
    if header is None:
        return True
    value = header.strip()
    if value.startswith(('"', "W/")):
        return not value.startswith("W/") and value == etag
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    return http_date(when) == http_date(last_modified)


class Multipart(NamedTuple):
    """Layout of a ``multipart/byteranges`` body: preamble of each part, then the epilogue."""

    boundary: str
    heads: list[bytes]
    tail: bytes
    length: int

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"


def multipart(ranges: Sequence[ByteRange], size: int, content_type: str, boundary: str
              ) -> Multipart:
    heads = []
    total = 0
    for i, r in enumerate(ranges):
        head = (
            ("\r\n" if i else "") + f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        ).encode("ascii")
        heads.append(head)
        total += len(head) + r.length
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return Multipart(boundary, heads, tail, total + len(tail))
