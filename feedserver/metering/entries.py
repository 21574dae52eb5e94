"""One row of the usage ledger as a typed record, and its canonical form for the hash chain.

A row is either usage (``kind = usage``; ``late`` when it arrived after its month closed) or a
correcting entry appended later: ``void`` and ``amend`` carry the quantity *change* of the
original row they name in ``corrects``, ``credit`` a money credit (``meter = credit``, the amount
in the minor unit of the currency named in ``resource``). Nothing is ever updated or deleted; the
net of an original is its quantity plus the changes of the rows correcting it.

Canonical form (what ``row_hash`` covers): the JSON array of the 13 usage columns, ``seq``
first; a row of any other kind appends its 5 correction columns. Rows written before
corrections existed therefore keep their hashes, and a row cannot change kind without its hash
changing (the arrays differ in length).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from feedserver.metering.records import UsageRecord

Kind = Literal["usage", "late", "void", "amend", "credit"]
KINDS: tuple[Kind, ...] = ("usage", "late", "void", "amend", "credit")
ORIGINAL_KINDS: tuple[Kind, ...] = ("usage", "late")
CORRECTION_KINDS: tuple[Kind, ...] = ("void", "amend")

COLUMNS = (
    "seq", "usage_id", "ts", "customer_id", "api_key_id", "user_name", "feed", "project",
    "meter", "quantity", "request_id", "resource", "download_id",
)
CORRECTION_COLUMNS = ("kind", "corrects", "reason", "actor", "original_ts")
ALL_COLUMNS = (*COLUMNS, *CORRECTION_COLUMNS, "prev_hash", "row_hash")
SELECT = ", ".join(ALL_COLUMNS)


class LedgerRow(msgspec.Struct, frozen=True, kw_only=True):
    """A ledger row; ``seq`` 0 and empty hashes until the ledger appends it."""

    usage_id: str
    ts: str  # fixed-width UTC text (``ledger.ts_text``): when it is booked
    customer_id: str
    feed: str
    meter: str
    quantity: int
    seq: int = 0
    api_key_id: str = ""
    user_name: str = ""
    project: str = ""
    request_id: str = ""
    resource: str = ""
    download_id: str = ""
    kind: Kind = "usage"
    corrects: str = ""  # void/amend: the usage_id of the original row
    reason: str = ""
    actor: str = ""  # who made the correction (a username, or "ledger" for late rows)
    original_ts: str = ""  # late/void/amend: when the usage itself happened
    prev_hash: str = ""
    row_hash: str = ""

    @property
    def month(self) -> str:
        return self.ts[:7]

    @property
    def day(self) -> str:
        return self.ts[:10]


def canonical(row: LedgerRow, seq: int | None = None) -> list[Any]:
    """The values ``row_hash`` covers, in column order (``seq``: the row's, unless given)."""
    values: list[Any] = [
        row.seq if seq is None else seq, row.usage_id, row.ts, row.customer_id, row.api_key_id,
        row.user_name, row.feed, row.project, row.meter, row.quantity, row.request_id,
        row.resource, row.download_id,
    ]
    if row.kind != "usage":
        values += [row.kind, row.corrects, row.reason, row.actor, row.original_ts]
    return values


def from_db(values: Sequence[Any]) -> LedgerRow:
    """A row selected with ``SELECT``."""
    (seq, usage_id, ts, customer_id, api_key_id, user_name, feed, project, meter, quantity,
     request_id, resource, download_id, kind, corrects, reason, actor, original_ts, prev_hash,
     digest) = values
    return LedgerRow(
        seq=int(seq), usage_id=str(usage_id), ts=str(ts), customer_id=str(customer_id),
        api_key_id=str(api_key_id), user_name=str(user_name), feed=str(feed),
        project=str(project), meter=str(meter), quantity=int(quantity),
        request_id=str(request_id), resource=str(resource), download_id=str(download_id),
        kind=kind if kind in KINDS else "usage", corrects=str(corrects), reason=str(reason),
        actor=str(actor), original_ts=str(original_ts), prev_hash=str(prev_hash),
        row_hash=str(digest),
    )


def record_body(rec: UsageRecord, ts: str) -> list[Any]:
    """``canonical`` of the usage row that ``rec`` becomes when booked at ``ts`` (``seq`` 0
    until sealed), built straight from the record: the ledger writer's per-response path
    makes no ``LedgerRow``."""
    return [0, rec.usage_id, ts, rec.customer_id, rec.api_key_id, rec.user, rec.feed,
            rec.project, rec.meter, rec.quantity, rec.request_id, rec.resource,
            rec.download_id]


def booked_late(body: list[Any], booked: str) -> None:
    """Turn ``record_body``'s ``body`` into ``canonical`` of its late row: booked at
    ``booked`` because its month had closed, its own time kept as ``original_ts``."""
    original = body[2]
    body[2] = booked
    body += ["late", "", f"arrived after {original[:7]} closed", "ledger", original]
