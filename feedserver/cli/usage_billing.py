"""``feedserver usage void|amend|credit|export``: corrections and exports to billing systems.

Corrections are appended to the ledger (``feedserver.metering.corrections``); nothing is ever
edited or deleted. ``--key`` makes a correction idempotent (run it twice, it applies once).
``export`` writes one month of ledger rows as CloudEvents or Stripe meter events (NDJSON) or CSV,
and with ``--push`` posts them to ``usage_export_url`` (``feedserver.metering.push``).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from feedserver.cli.command import bind
from feedserver.config import Settings
from feedserver.errors import InvalidParameter
from feedserver.metering.corrections import Correction, correct, major_units
from feedserver.metering.customers import customer_directory, stripe_customer_ids
from feedserver.metering.entries import LedgerRow
from feedserver.metering.exports import FORMATS, cloud_event, ndjson, stripe_events
from feedserver.metering.ledger import Ledger
from feedserver.metering.months import parse_month
from feedserver.metering.periods import Periods
from feedserver.metering.push import Pusher
from feedserver.metering.rows import RowQuery, rows_csv, select_rows
from feedserver.storage.db import connect


def register(cmds: Any) -> None:
    """Add the commands to ``feedserver usage``'s sub-parsers."""
    common: list[tuple[str, dict[str, Any]]] = [
        ("--reason", {"required": True, "help": "why (kept in the ledger, shown on reports)"}),
        ("--actor", {"help": "who makes the correction (default: the OS user)"}),
        ("--key", {"default": "", "help": "idempotency key: the same key never applies twice"}),
    ]
    void = cmds.add_parser("void", help="void a usage row: append a correction that nets it to 0")
    void.add_argument("usage_id")
    _add(void, common)
    bind(void, cmd_void)

    amend = cmds.add_parser("amend", help="amend a usage row to a new quantity (appended)")
    amend.add_argument("usage_id")
    amend.add_argument("--quantity", type=int, required=True, help="the row's new net quantity")
    _add(amend, common)
    bind(amend, cmd_amend)

    credit = cmds.add_parser("credit", help="credit money to a customer's invoice")
    credit.add_argument("customer", help="customer name or id")
    credit.add_argument("--amount", required=True, help="in the plan's currency, e.g. 25.00")
    credit.add_argument("--month", help="open month to book it in (default: this month)")
    _add(credit, common)
    bind(credit, cmd_credit)

    export = cmds.add_parser("export", help="one month of usage for a billing system")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--month", required=True, help="YYYY-MM (UTC): rows booked in it")
    export.add_argument("--customer", help="customer name or id (default: all)")
    export.add_argument("--output", type=Path, help="write here instead of stdout")
    export.add_argument("--push", action="store_true",
                        help="POST to FEEDSERVER_USAGE_EXPORT_URL instead of writing")
    bind(export, cmd_export)


def _add(parser: Any, arguments: list[tuple[str, dict[str, Any]]]) -> None:
    for flag, options in arguments:
        parser.add_argument(flag, **options)


@contextmanager
def _ledger(settings: Settings) -> Iterator[Ledger]:
    db = connect(settings.database)
    try:
        yield Ledger(db, periods=Periods.hours(settings.usage_grace_hours))
    finally:
        db.close()


def _actor(actor: str | None) -> str:
    return actor or f"cli:{getpass.getuser()}"


def _print(row: LedgerRow) -> None:
    sign = "+" if row.quantity > 0 else ""
    target = f"of {row.corrects} " if row.corrects else ""
    print(f"{row.kind} {target}appended: {row.usage_id} ({row.meter} {sign}{row.quantity}, "
          f"booked {row.ts[:10]}, seq {row.seq})")


def cmd_void(settings: Settings, *, usage_id: str, reason: str, actor: str | None = None,
             key: str = "") -> int:
    with _ledger(settings) as ledger:
        _print(correct(ledger, Correction(kind="void", usage_id=usage_id, reason=reason,
                                          actor=_actor(actor), key=key)))
    return 0


def cmd_amend(settings: Settings, *, usage_id: str, quantity: int, reason: str,
              actor: str | None = None, key: str = "") -> int:
    with _ledger(settings) as ledger:
        _print(correct(ledger, Correction(kind="amend", usage_id=usage_id, quantity=quantity,
                                          reason=reason, actor=_actor(actor), key=key)))
    return 0


def cmd_credit(settings: Settings, *, customer: str, amount: str, reason: str,
               month: str | None = None, actor: str | None = None, key: str = "") -> int:
    with _ledger(settings) as ledger:
        directory = customer_directory(ledger.db)
        cid = directory.resolve(customer)
        currency = directory.terms(cid).prices.currency
        row = correct(ledger, Correction(kind="credit", customer_id=cid, amount=amount,
                                         currency=currency, month=month or "", reason=reason,
                                         actor=_actor(actor), key=key))
    print(f"credit appended: {row.usage_id} ({major_units(row.quantity, row.resource)} "
          f"{row.resource} to {directory.name(cid)}, booked {row.ts[:7]}, seq {row.seq})")
    return 0


def cmd_export(settings: Settings, *, format: str, month: str, customer: str | None = None,
               output: Path | None = None, push: bool = False) -> int:
    parse_month(month)
    if push and format == "csv":
        raise InvalidParameter("--push sends cloudevents or stripe-meter-events, not csv")
    if push and not settings.usage_export_url:
        raise InvalidParameter("--push needs FEEDSERVER_USAGE_EXPORT_URL")
    db = connect(settings.database)
    try:
        directory = customer_directory(db)
        cid = directory.resolve(customer) if customer else None
        rows = list(select_rows(db, RowQuery(month=month, customer_id=cid)))
        stripe_ids = stripe_customer_ids(db) if format == "stripe-meter-events" else {}
        names = {r.customer_id: directory.name(r.customer_id) for r in rows}
    finally:
        db.close()
    skipped = 0
    if format == "cloudevents":
        events: list[Any] = [cloud_event(r, settings.public_url) for r in rows]
    elif format == "stripe-meter-events":
        events, skipped = stripe_events(rows, stripe_ids, names)
    else:
        events = []
    if push:
        assert settings.usage_export_url is not None
        with httpx.Client(timeout=30) as client:
            pusher = Pusher(client, settings.usage_export_url, token=settings.usage_export_token,
                            retries=settings.usage_export_retries)
            result = (pusher.cloudevents(events, settings.usage_export_batch_size)
                      if format == "cloudevents" else pusher.stripe(events))
        print(f"usage export: {result.records} {format} pushed in {result.requests} requests "
              f"({result.retries} retries)")
    else:
        data = rows_csv(rows).encode() if format == "csv" else ndjson(events)
        if output:
            output.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
    if skipped:
        print(f"usage export: {skipped} credit row(s) left out: Stripe meter events carry usage; "
              "apply credits as Stripe credit notes", file=sys.stderr)
    return 0
