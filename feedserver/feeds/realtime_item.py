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
absent: ``Event`` omits None fields). The splice does exactly that, and only when it can show
the layout is the expected one; otherwise (``event`` missing, null or not canonical, already
carrying ``partition``/``offset``, ``"event":`` seen more than once, its bytes found more than
once, a field of an unexpected type) it takes the full decode/re-encode path, as before.
Records from another producer keep their own formatting on the fast path (same JSON value).
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


class StreamItem:
    """One article event as every subscriber sees it (shared, never mutated once built, but
    for the memoised ``data``)."""

    __slots__ = ("_data", "namespace", "offset", "partition", "project", "raw", "timestamp_ms",
                 "valid")

    def __init__(self, partition: int, offset: int, timestamp_ms: int, raw: bytes, *,
                 project: str | None = None, namespace: int | None = None,
                 data: dict[str, Any] | None = None, valid: bool = True) -> None:
        self.partition = partition
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.raw = raw  # the bytes every subscriber without filters/fields receives
        self.project = project
        self.namespace = namespace
        self.valid = valid  # False: an undecodable record; it moves positions, is never sent
        self._data = data

    @property
    def data(self) -> dict[str, Any] | None:
        """The stamped article as a dict (None for an undecodable record); decoded from
        ``raw`` on first use and kept, so N subscribers with filters decode it once."""
        if self._data is None and self.valid:
            self._data = _DECODER.decode(self.raw)
        return self._data


def to_item(record: LogRecord) -> StreamItem:
    """The item for ``record``, with its log position stamped into ``event``."""
    try:
        route = _ROUTE.decode(record.value)
    except msgspec.ValidationError:
        return _full_item(record)  # valid JSON of an unexpected shape: the general path
    except msgspec.DecodeError:
        return _undecodable(record)
    raw = _stamped(record, route.event)
    if raw is None:
        return _full_item(record)
    return StreamItem(record.partition, record.offset, record.timestamp_ms, raw,
                      project=route.is_part_of.identifier if route.is_part_of else None,
                      namespace=route.namespace.identifier if route.namespace else None)


def _stamped(record: LogRecord, event: msgspec.Raw) -> bytes | None:
    """``record.value`` with ``"partition":P,"offset":O`` appended inside the top-level
    ``event`` object, or None when that cannot be shown to equal the full path's bytes."""
    value = record.value
    if len(event) < 2 or value.count(_EVENT_KEY) != 1:
        return None  # absent, or a second "event" key (nested or duplicate): general path
    at = value.find(event)
    # ``event`` is the exact bytes of the top-level value, so they occur in the record at its
    # own place; found there once and right after the key, that place is the only candidate.
    if at < len(_EVENT_KEY) or value[at - len(_EVENT_KEY):at] != _EVENT_KEY \
            or value.find(event, at + 1) != -1:
        return None
    try:
        fields = _DECODER.decode(event)
    except msgspec.DecodeError:
        return None
    if not isinstance(fields, dict) or "partition" in fields or "offset" in fields:
        return None  # null or not an object (replaced), or a key the dict path would overwrite
    body = bytes(event)
    if _ENCODER.encode(fields) != body:
        return None  # not canonical (spacing, escapes, duplicate keys): re-encoding differs
    stamp = b'"partition":%d,"offset":%d}' % (record.partition, record.offset)
    stamped = body[:-1] + (b"," if fields else b"") + stamp
    return value[:at] + stamped + value[at + len(body):]


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
                      data=data)


def _undecodable(record: LogRecord) -> StreamItem:
    log.warning("undecodable article record at %s:%s", record.partition, record.offset)
    return StreamItem(record.partition, record.offset, record.timestamp_ms, b"", valid=False)
