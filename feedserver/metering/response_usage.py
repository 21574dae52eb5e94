"""One journal line per response (``ResponseUsage``) and its ONE expansion into usage records.

What the event loop does per response after admission is kept to the least that makes the
response's usage durable: what the response's records are derived from (the time as Unix
nanoseconds, the principal's ids, the ``Usage`` keyword arguments as given, response id
included), encoded as ONE compact JSON array (``line``) and copied into the journal's mapped
segment. Everything derived (the response key's SHA-1, the download id, the ``datetime``,
one ``UsageRecord`` per meter) is made by ``expand``, off the event loop: by the writer
before ``Destination.deliver`` and by journal recovery (``journal.decode_line``).

``expand`` of the decoded ``line(nanos(ts), principal, usage)`` is exactly
``response_records(principal, ts=ts, **usage)`` for every input (a property test pins it):
the same usage ids, meters, quantities, times and download ids, so ids already committed,
replays and checkpoints all agree whichever form a response was journaled in. The line is
tagged (its first element is ``"response"``), and a ``UsageRecord`` line is a JSON object, so
the journal tells them apart by their first byte: segments written before this line existed
are still recovered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from feedserver.metering.records import (
    OTHER_METERS,
    MeteredPrincipal,
    Usage,
    UsageRecord,
    download_id,
    response_key,
)
from feedserver.plans import Feed

# Unix nanoseconds from 1970 to 2262 (a signed 64-bit count): a line outside is refused when
# decoded (skipped and counted by recovery), never an ``OverflowError`` in ``expand``.
Nanos = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
TAG = "response"  # the first element of a response's line
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_encode = msgspec.json.Encoder().encode


class Delivered(msgspec.Struct, frozen=True):
    """What one response (or stream, so far) delivered: ``Usage``, the keyword arguments of
    ``record()`` / ``progress()``, as they came (a JSON object in the line)."""

    feed: Feed
    project: str | None
    response_id: Annotated[str, msgspec.Meta(min_length=1)]
    request_id: str = ""
    bytes_sent: int = 0
    articles: int = 0
    resource: str | None = None
    download: bool = False
    stream_seconds: int = 0
    stream_events: int = 0


class ResponseUsage(msgspec.Struct, frozen=True, array_like=True, tag=TAG):
    """One response's journal line: ``["response", ts_ns, customer_id, api_key_id, user,
    {usage}]`` (``line``)."""

    ts_ns: Nanos  # when the usage was recorded: ``time.time_ns()`` (the records keep its µs)
    customer_id: str
    api_key_id: str | None
    user: str | None
    usage: Delivered


def line(ts_ns: int, principal: MeteredPrincipal, usage: Usage) -> bytes:
    """The journal line (newline-terminated) of ``principal``'s ``usage`` at ``ts_ns``: the
    principal's ids and the keyword arguments as given, nothing derived (this runs per
    response on the event loop; a list and a dict encode faster than a struct is built)."""
    return _encode([TAG, ts_ns, principal.customer_id, principal.api_key_id, principal.user,
                    usage]) + b"\n"


def nanos(ts: datetime) -> int:
    """``ts`` as Unix nanoseconds (``ResponseUsage.ts_ns``)."""
    return (ts - _EPOCH) // _MICROSECOND * 1000


def from_nanos(ts_ns: int) -> datetime:
    """The UTC time of Unix nanoseconds ``ts_ns``, to the microsecond (``nanos``' inverse for
    a time with whole microseconds)."""
    return _EPOCH + timedelta(0, 0, ts_ns // 1000)


def expand(entry: ResponseUsage) -> list[UsageRecord]:
    """The usage records of one journaled response: always ``requests``, the other meters when
    non-zero, and the ``downloads`` record (id: the download id) for a download of a
    resource; exactly ``response_records`` of the same response (see the module's text)."""
    usage = entry.usage
    ts = _EPOCH + timedelta(0, 0, entry.ts_ns // 1000)  # positional: ~1k instructions less
    customer, key, resource = entry.customer_id, entry.api_key_id or "", usage.resource or ""
    response_id = usage.response_id
    dl = download_id(customer, resource, ts) if usage.download and resource else ""
    key_text = response_key(customer, key, response_id)
    first = UsageRecord(
        usage_id=key_text + "0", ts=ts, customer_id=customer, meter="requests", quantity=1,
        feed=usage.feed, api_key_id=key, user=entry.user or "", project=usage.project or "",
        request_id=usage.request_id or response_id, resource=resource, download_id=dl)
    out = [first]
    for meter, name, digit in OTHER_METERS:  # the same table as ``response_records``
        quantity = getattr(usage, name)  # ``Delivered`` has a field of each ``Usage`` key
        if quantity:
            out.append(_replace(first, usage_id=key_text + digit, meter=meter,
                                quantity=quantity))
    if dl:
        out.append(_replace(first, usage_id=dl, meter="downloads", quantity=1))
    return out


_replace = msgspec.structs.replace
