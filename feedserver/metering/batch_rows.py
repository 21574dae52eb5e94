"""A batch of response lines booked as one ledger row per group, with the lines as evidence.

With ``ledger_granularity = "batch"`` the ledger appender books the journal lines of one
delivered batch (``response_usage.line``: one per response) as ONE usage row per group of
responses that share the day (UTC), customer, API key, user, feed, project, resource and
download, per meter, its quantity the group's sum; a download stays one row per download id,
as in the per-response rows (``response_records``). The lines themselves, compressed, are the
batch's evidence (``Evidence``): kept beside the rows in the same transaction, named by their
SHA-256 in each row's ``request_id`` (``batch:<sha256>``), which the row's hash covers. So the
sums are as exact as the per-response rows', every response stays readable from its line, and
the ledger writes a few rows per batch instead of two or three per response (issue 17: the
appender's inserts were most of its CPU, docs/metering.md "Rows per batch").

Pure: bytes in, records out. What is not derived from the lines:
- the rows' ``usage_id``: ``derive_id`` of the batch's digest and the group's key, so a batch
  delivered again (the writer's retry after a lost answer) makes the same ids, which the
  ledger already holds and skips;
- the response keys (``response_keys``), computed only when a journal replay asks which of its
  responses a batch has booked already (``Ledger.append`` drops those).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec
import zstandard

from feedserver.metering.records import (
    OTHER_METERS,
    Meter,
    UsageRecord,
    derive_id,
    download_id,
    response_key,
)
from feedserver.metering.response_usage import ResponseUsage, from_nanos
from feedserver.plans import Feed

EVIDENCE_PREFIX = "batch:"  # a batch row's ``request_id``: this, then the lines' SHA-256
_DAY_NS = 86_400 * 1_000_000_000
_decode = msgspec.json.Decoder(list[ResponseUsage]).decode
_encode_key = msgspec.json.Encoder().encode
# Level 1: ~0.5 µs per ~270-byte line on this machine, a third of the lines' size.
_compress = zstandard.ZstdCompressor(level=1).compress
_DECOMPRESSED_MAX = 256 * 1024 * 1024  # a batch's lines are ~70 kB; this bounds a bad blob

# (day, customer, API key, user, feed, project, resource, download id), and with the meter
_Base = tuple[int, str, str, str, Feed, str, str, str]
_Group = tuple[int, str, str, str, Feed, str, str, str, Meter]


class Evidence(msgspec.Struct, frozen=True):
    """One batch's lines as delivered: their SHA-256 (hex), the first and last response's
    time (Unix nanoseconds) and the lines compressed (zstd)."""

    digest: str
    first_ns: int
    last_ns: int
    lines: bytes


class BatchRows(msgspec.Struct, frozen=True):
    """The usage records of one batch (a group's sum each) and its evidence."""

    records: list[UsageRecord]
    evidence: Evidence


def batch_rows(lines: bytes) -> BatchRows:
    """The group records and the evidence of ``lines``: response lines, each
    newline-terminated, as the writer delivers them. Raises ``msgspec.DecodeError`` when any
    line is not a response's, a line is empty or the last one has no newline (the caller
    refuses the whole batch). Exact: each group's quantity is the sum of what ``expand``
    gives its responses, and the downloads are the same ids."""
    entries = _entries(lines)
    digest = hashlib.sha256(lines).hexdigest()
    # The responses of each group (a handful per batch), in the lines' order; the sums are
    # taken per group and meter afterwards, so each response costs one key and one append.
    members: dict[_Base, list[ResponseUsage]] = {}
    downloads: dict[str, tuple[_Group, int]] = {}
    for entry in entries:
        usage, ts_ns = entry.usage, entry.ts_ns
        resource = usage.resource or ""
        dl = (download_id(entry.customer_id, resource, from_nanos(ts_ns))
              if usage.download and resource else "")
        base: _Base = (ts_ns // _DAY_NS, entry.customer_id, entry.api_key_id or "",
                       entry.user or "", usage.feed, usage.project or "", resource, dl)
        group = members.get(base)
        if group is None:
            group = members[base] = []
        group.append(entry)
        if dl and dl not in downloads:
            downloads[dl] = ((*base, "downloads"), ts_ns)
    sums: dict[_Group, int] = {}
    first: dict[_Group, int] = {}  # a group's time: its first response's (with the meter)
    for base, group in members.items():
        sums[(*base, "requests")] = len(group)
        first[(*base, "requests")] = group[0].ts_ns
        for meter, name, _ in OTHER_METERS:
            quantities = [getattr(entry.usage, name) for entry in group]
            if any(quantities):  # a row where any response had some (as ``expand``)
                key: _Group = (*base, meter)
                sums[key] = sum(quantities)
                first[key] = group[next(i for i, q in enumerate(quantities) if q)].ts_ns
    stamps = [entry.ts_ns for entry in entries]
    low, high = min(stamps), max(stamps)
    request = EVIDENCE_PREFIX + digest
    records = [_record(derive_id("batch", digest, _encode_key(group).decode()), group,
                       quantity, first[group], request)
               for group, quantity in sums.items()]
    records += [_record(dl, group, 1, ts_ns, request) for dl, (group, ts_ns) in downloads.items()]
    return BatchRows(records, Evidence(digest, low, high, _compress(lines)))


def _record(usage_id: str, group: _Group, quantity: int, ts_ns: int, request: str
            ) -> UsageRecord:
    _, customer, key, user, feed, project, resource, dl, meter = group
    return UsageRecord(usage_id=usage_id, ts=from_nanos(ts_ns), customer_id=customer,
                       meter=meter, quantity=quantity, feed=feed,
                       api_key_id=key, user=user, project=project, request_id=request,
                       resource=resource, download_id=dl)


def _entries(lines: bytes) -> list[ResponseUsage]:
    """The responses of newline-terminated response lines, in one decode (the lines joined
    into one JSON array). Raises ``msgspec.DecodeError`` as ``batch_rows`` says."""
    if not lines.endswith(b"\n"):
        raise msgspec.DecodeError("a batch whose last line has no newline (torn)")
    entries = _decode(b"[" + lines[:-1].replace(b"\n", b",") + b"]")
    if not entries:
        raise msgspec.DecodeError("a batch with no lines")
    return entries


def evidence_digest(request_id: str) -> str:
    """The SHA-256 of the batch a row's ``request_id`` names (``batch:<sha256>``), or "" for
    a row of a single response."""
    return request_id.removeprefix(EVIDENCE_PREFIX) \
        if request_id.startswith(EVIDENCE_PREFIX) else ""


def evidence_data(compressed: bytes) -> bytes:
    """A batch's lines as delivered (what its digest is the SHA-256 of). Raises
    ``zstandard.ZstdError`` for a blob that is not zstd or decompresses past 256 MiB."""
    return zstandard.ZstdDecompressor().decompress(compressed, max_output_size=_DECOMPRESSED_MAX)


def response_keys(compressed: Iterable[bytes]) -> set[str]:
    """The response keys (``response_key``: a response's usage ids but their last
    character) of every response in these evidences: what a journal replay must not book
    again."""
    datas = (evidence_data(blob) for blob in compressed)
    return {response_key(entry.customer_id, entry.api_key_id or "", entry.usage.response_id)
            for data in datas if data for entry in _entries(data)}
