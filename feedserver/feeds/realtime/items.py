"""One article record as every realtime subscriber sees it (pure: no I/O).

A record must reach subscribers with its log position stamped into ``event``
(``event.partition`` / ``event.offset``). Decoding the whole article into a dict and encoding it
again only for that is the hub's largest cost per record, and most subscribers need nothing
but the project and namespace (to check their entitlement). So ``to_item``:

* decodes only the routing fields into a small typed struct (``is_part_of.identifier``,
  ``namespace.identifier``, and the raw bytes of ``event``): msgspec skips the rest without
  building it, but still checks the whole record is valid JSON;
* splices ``"partition":P,"offset":O`` into the bytes of the top-level ``event`` object;
* leaves the full dict to ``StreamItem.data``, decoded on first use (subscribers with
  ``filters`` / ``fields``) and kept on the shared item.

Why the splice gives the same bytes as decoding + re-encoding: the article topic is written by
our consumer, which encodes with msgspec (compact, canonical escaping, no duplicate keys), so
re-encoding the decoded dict reproduces the record byte for byte, except inside ``event``,
where the dict path appends ``partition`` then ``offset`` after the existing keys (they are
absent: ``Event`` omits None fields). The splice does exactly that. It finds the top-level
``event`` object without tracking nesting: in such a record the key is written ``"event":``,
that sequence cannot occur inside a JSON string (the quotes would be escaped), so when it occurs
exactly once and the top-level value's bytes (from the routing decode) follow it, that is the
place. Any other layout takes the full decode/re-encode path, as before: ``event`` missing,
null or not an object, already carrying ``partition``/``offset``, a second ``"event":`` (nested
or duplicate), a routing field of an unexpected type. Records from another producer keep
their own spacing and escapes on the fast path (same JSON value).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from feedserver.storage.eventlog import LogRecord

log = logging.getLogger(__name__)

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_EVENT_KEY = b'"event":'
_PARTITION_KEY = b'"partition":'
_OFFSET_KEY = b'"offset":'
_OPEN = ord("{")
_SPACE = frozenset(b" \t\r\n")  # JSON whitespace


class _ProjectRef(msgspec.Struct):
    identifier: str | None = None


class _NamespaceRef(msgspec.Struct):
    identifier: int | None = None


class _Route(msgspec.Struct):
    """What routing needs; every other field is skipped (validated, not built)."""

    is_part_of: _ProjectRef | None = None
    namespace: _NamespaceRef | None = None
    event: msgspec.Raw = msgspec.Raw()  # empty: absent


_ROUTE = msgspec.json.Decoder(_Route)


class StreamItem(msgspec.Struct, eq=False, gc=False):
    """One article event as every subscriber sees it (shared, never mutated once built, but
    for the memoised ``data``).

    A Struct (built in C, about a quarter of a Python ``__init__``'s instructions: one is built
    per record read), compared by identity as before; ``gc=False``: it holds no container
    that could lead back to it (the decoded dict is plain JSON data)."""

    partition: int
    offset: int
    timestamp_ms: int
    raw: bytes  # the bytes every subscriber without filters/fields receives
    project: str | None = None
    namespace: int | None = None
    valid: bool = True  # False: an undecodable record; it moves positions, is never sent
    _data: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any] | None:
        """The stamped article as a dict (None for an undecodable record); decoded from
        ``raw`` on first use and kept, so N subscribers with filters decode it once."""
        if self._data is None and self.valid:
            self._data = _DECODER.decode(self.raw)
        return self._data

    def forget(self) -> None:
        """Drop the decoded dict (``data`` decodes ``raw`` again when asked)."""
        self._data = None


class Chunk:
    """Items rendered for one view: the bytes to write (``data``: ``frames`` frames), one
    record per frame for billing (``marks``, packed by the caller) and, for SSE, the id of the
    last frame (``last_id``, empty otherwise). Shared by every stream of that view."""

    __slots__ = ("data", "frames", "last_id", "marks")

    def __init__(self, data: bytes, frames: int, marks: bytes, last_id: bytes = b"") -> None:
        self.data = data
        self.frames = frames
        self.marks = marks
        self.last_id = last_id

    @property
    def size(self) -> int:
        return len(self.data) + len(self.marks)


def to_item(record: LogRecord) -> StreamItem:
    """The item for ``record``, with its log position stamped into ``event``."""
    try:
        route = _ROUTE.decode(record.value)
    except msgspec.ValidationError:
        return _full_item(record)  # valid JSON of an unexpected shape: the general path
    except msgspec.DecodeError:
        return _undecodable(record)
    raw = _stamped(record.value, record.partition, record.offset, route.event)
    if raw is None:
        return _full_item(record)
    return StreamItem(record.partition, record.offset, record.timestamp_ms, raw,
                      project=route.is_part_of.identifier if route.is_part_of else None,
                      namespace=route.namespace.identifier if route.namespace else None)


def _stamped(value: bytes, partition: int, offset: int, event: msgspec.Raw) -> bytes | None:
    """``value`` with ``"partition":P,"offset":O`` appended inside the top-level ``event``
    object, or None when that cannot be shown to equal the full path's bytes.

    Bytes operations only, on ``value`` itself (no copy of the event's bytes): one scan of the
    record for ``"event":`` (and on for a second one), a compare of the event's bytes where the
    key ends, and two short scans inside the event object."""
    size = len(event)  # 0: absent
    at = value.find(_EVENT_KEY)
    if not size or at < 0 or value.find(_EVENT_KEY, at + 1) != -1:
        return None  # absent, or a second "event" key (nested or duplicate): the general path
    at += len(_EVENT_KEY)
    # The one key named "event" in the record is the top-level one, and its value's bytes
    # start right after it (an object, no space after the colon), so this is the event object.
    if value[at] != _OPEN or not value.startswith(event, at):
        return None  # null or not an object (replaced), or spaced: the general path
    end = at + size - 1  # the event object's closing brace
    if value.find(_PARTITION_KEY, at, end) != -1 or value.find(_OFFSET_KEY, at, end) != -1:
        return None  # keys the dict path overwrites
    last = value[end - 1]
    if last == _OPEN or (last in _SPACE and not value[at + 1:end].strip()):  # empty object
        stamp = b'"partition":%d,"offset":%d' % (partition, offset)
    else:
        stamp = b',"partition":%d,"offset":%d' % (partition, offset)
    return b"".join((value[:end], stamp, value[end:]))


def _full_item(record: LogRecord) -> StreamItem:
    """The general path: decode the whole record, stamp the dict, encode it again."""
    try:
        data = _DECODER.decode(record.value)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        event = data.get("event")
        if not isinstance(event, dict):
            event = data["event"] = {}
        event["partition"] = record.partition
        event["offset"] = record.offset
    except (msgspec.DecodeError, TypeError):
        return _undecodable(record)
    part_of = data.get("is_part_of")
    ns = data.get("namespace")
    return StreamItem(record.partition, record.offset, record.timestamp_ms,
                      _ENCODER.encode(data),
                      project=part_of.get("identifier") if isinstance(part_of, dict) else None,
                      namespace=ns.get("identifier") if isinstance(ns, dict) else None,
                      _data=data)


def _undecodable(record: LogRecord) -> StreamItem:
    log.warning("undecodable article record at %s:%s", record.partition, record.offset)
    return StreamItem(record.partition, record.offset, record.timestamp_ms, b"", valid=False)
