"""Ledger rows as billing systems ingest them (pure encoders; the HTTP push is ``push``).

* **CloudEvents** (JSON, as OpenMeter's ``POST /api/v1/events`` takes them): one event per
  ledger row; ``id`` = the row's usage id (OpenMeter drops a repeated ``id`` + ``source``),
  ``source`` = the server's public URL, ``type`` = ``feedserver.<meter>`` (one OpenMeter meter
  per type, ``valueProperty: $.value``), ``subject`` = our customer id, ``time`` = when the row
  is booked, ``data`` = value, feed, project, key, and for corrections kind, ``corrects`` and
  reason. Corrections are events with a negative value, so a SUM meter gives the net.
* **Stripe meter events** (``POST /v1/billing/meter_events``): ``event_name`` =
  ``feedserver_<meter>``, ``payload.stripe_customer_id`` = the customer's Stripe id (an
  attribute of the customer: ``feedserver customers set-stripe``), ``payload.value`` = the
  quantity as a string (negative for corrections, which Stripe's sum meters accept),
  ``identifier`` = our usage id (Stripe deduplicates on it), ``timestamp`` = unix seconds.
  Credits are money, not usage: they are left out (apply them as Stripe credit notes).
* **csv**: every column of every row (``rows.rows_csv``).

Both JSON forms are written as NDJSON, one record per line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Literal

import msgspec

from feedserver.errors import InvalidParameter
from feedserver.metering.entries import LedgerRow

ExportFormat = Literal["cloudevents", "stripe-meter-events", "csv"]
FORMATS: tuple[ExportFormat, ...] = ("cloudevents", "stripe-meter-events", "csv")
STRIPE_EVENT_PREFIX = "feedserver_"
_encoder = msgspec.json.Encoder()


class UsageData(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    value: int
    meter: str
    feed: str = ""
    project: str = ""
    api_key_id: str = ""
    kind: str = "usage"
    corrects: str = ""
    reason: str = ""
    original_time: str = ""
    currency: str = ""  # credits: the value is in this currency's minor unit


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    source: str
    type: str
    subject: str
    time: str  # RFC 3339, UTC
    data: UsageData
    specversion: str = "1.0"
    datacontenttype: str = "application/json"


class StripePayload(msgspec.Struct, frozen=True, kw_only=True):
    stripe_customer_id: str
    value: str


class StripeMeterEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_name: str
    payload: StripePayload
    identifier: str
    timestamp: int


def cloud_event(row: LedgerRow, source: str) -> CloudEvent:
    return CloudEvent(
        id=row.usage_id, source=source, type=f"feedserver.{row.meter}",
        subject=row.customer_id, time=row.ts,
        data=UsageData(value=row.quantity, meter=row.meter, feed=row.feed, project=row.project,
                       api_key_id=row.api_key_id, kind=row.kind, corrects=row.corrects,
                       reason=row.reason, original_time=row.original_ts,
                       currency=row.resource if row.kind == "credit" else ""),
    )


def _unix(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def stripe_event(row: LedgerRow, stripe_customer_id: str) -> StripeMeterEvent:
    return StripeMeterEvent(
        event_name=STRIPE_EVENT_PREFIX + row.meter,
        payload=StripePayload(stripe_customer_id=stripe_customer_id, value=str(row.quantity)),
        identifier=row.usage_id, timestamp=_unix(row.ts),
    )


def stripe_events(rows: Iterable[LedgerRow], stripe_ids: Mapping[str, str],
                  names: Mapping[str, str] | None = None) -> tuple[list[StripeMeterEvent], int]:
    """The meter events of ``rows`` and how many credit rows were left out. Raises
    ``InvalidParameter`` naming every customer that has no Stripe customer id."""
    events: list[StripeMeterEvent] = []
    missing: set[str] = set()
    credits = 0
    for row in rows:
        if row.kind == "credit":
            credits += 1
            continue
        stripe_id = stripe_ids.get(row.customer_id, "")
        if not stripe_id:
            missing.add(row.customer_id)
            continue
        events.append(stripe_event(row, stripe_id))
    if missing:
        who = ", ".join(sorted(f"{(names or {}).get(c, c)} ({c})" for c in missing))
        raise InvalidParameter(
            f"customers without a Stripe customer id: {who}; set one with "
            "'feedserver customers set-stripe NAME cus_...'", parameter="customer")
    return events, credits


def ndjson(records: Iterable[msgspec.Struct]) -> bytes:
    buf = bytearray()
    for record in records:
        _encoder.encode_into(record, buf, len(buf))
        buf += b"\n"
    return bytes(buf)
