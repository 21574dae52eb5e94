"""Corrections, never deletions: void or amend a usage row, or credit a customer.

Billing systems correct usage by appending (Orb amends, Stripe cancels by identifier, Lago
soft-deletes); so does this ledger. A correction is a new, hash-chained row that names the row it
corrects and carries the *change* of its quantity:

* ``void``: the change is minus the original's current net (net becomes 0);
* ``amend``: the change makes the original's net the given quantity;
* ``credit``: money off a customer's invoice (``meter = credit``, the amount in the minor unit
  of the plan's currency, the currency in ``resource``); it names no original.

Every correction has a reason and an actor. It is booked in the month of the row it corrects
while that month is open, else in the current month (its ``original_ts`` keeps when the usage
happened): a closed month's totals never change. A credit is booked in the month asked for, which
must be open. The net is computed under the ledger's head lock, so two admins voiding the same
row at once cannot both subtract it. ``key`` makes a correction idempotent: the same key (a form
submitted twice, a retried CLI call) never corrects twice.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Literal

import msgspec

from feedserver.errors import Conflict, InvalidParameter, NotFound
from feedserver.metering.entries import ORIGINAL_KINDS, SELECT, LedgerRow, from_db
from feedserver.metering.ledger import CORRECTED, Ledger, ts_text
from feedserver.metering.records import derive_id
from feedserver.storage.db import Cursor

CorrectionKind = Literal["void", "amend", "credit"]
_ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})
MAX_REASON = 500
MAX_CREDIT_MINOR = 10**12


class Correction(msgspec.Struct, frozen=True, kw_only=True):
    """What an admin asks for (portal form or CLI)."""

    kind: CorrectionKind
    reason: str
    actor: str
    usage_id: str = ""  # void, amend: the original row
    quantity: int | None = None  # amend: the original's new net quantity
    customer_id: str = ""  # credit
    amount: str = ""  # credit: a decimal amount in the currency's major unit ("12.50")
    currency: str = ""  # credit: the customer's plan currency
    month: str = ""  # credit: the (open) month to book it in; default: now
    key: str = ""  # idempotency key; empty: a fresh one


def minor_units(amount: str, currency: str) -> int:
    """``"12.50"`` USD -> 1250; refuses more decimals than the currency has."""
    exponent = 0 if currency.upper() in _ZERO_DECIMAL_CURRENCIES else 2
    try:
        value = Decimal(amount.strip())
    except InvalidOperation:
        raise InvalidParameter(f"amount must be a number, got {amount!r}",
                               parameter="amount") from None
    if not value.is_finite() or value <= 0:
        raise InvalidParameter("amount must be a positive number", parameter="amount")
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise InvalidParameter(f"{currency} amounts have at most {exponent} decimals",
                               parameter="amount")
    if scaled > MAX_CREDIT_MINOR:
        raise InvalidParameter("amount is too large", parameter="amount")
    return int(scaled)


def major_units(minor: int, currency: str) -> Decimal:
    exponent = 0 if currency.upper() in _ZERO_DECIMAL_CURRENCIES else 2
    return Decimal(minor).scaleb(-exponent)


def _check(c: Correction) -> None:
    if not 3 <= len(c.reason.strip()) <= MAX_REASON:
        raise InvalidParameter(f"a correction needs a reason of 3 to {MAX_REASON} characters",
                               parameter="reason")
    if not c.actor:
        raise InvalidParameter("a correction needs an actor", parameter="actor")
    if c.kind in ("void", "amend") and not c.usage_id:
        raise InvalidParameter(f"{c.kind} needs the usage id of the row", parameter="usage_id")
    if c.kind == "amend" and (c.quantity is None or not 0 <= c.quantity < 2**62):
        raise InvalidParameter("amend needs the new quantity (a whole number >= 0)",
                               parameter="quantity")
    if c.kind == "credit" and not (c.customer_id and c.currency):
        raise InvalidParameter("credit needs a customer and currency", parameter="customer")


def net_of(cur: Cursor, original: LedgerRow) -> int:
    row = cur.execute("SELECT COALESCE(SUM(quantity), 0) FROM usage_ledger "
                      f"WHERE corrects = ? AND {CORRECTED}", (original.usage_id,)).fetchone()
    return original.quantity + (int(row[0]) if row else 0)


def correct(ledger: Ledger, c: Correction) -> LedgerRow:
    """Append the correcting row; returns it (or the row an earlier call with the same key
    appended). Raises ``InvalidParameter``, ``NotFound`` (no such row) or ``Conflict`` (nothing
    to change, a correction of a correction, a closed month for a credit)."""
    _check(c)
    key = c.key or uuid.uuid4().hex
    target = c.usage_id if c.kind != "credit" else c.customer_id
    usage_id = derive_id("correction", c.kind, target, key)
    done = ledger.get(usage_id)
    if done is not None:
        return done
    now = ledger.periods.now()
    reason = " ".join(c.reason.split())
    if c.kind == "credit":
        month = c.month or ts_text(now)[:7]
        ledger.periods.require_open(month, now)
        row = LedgerRow(
            usage_id=usage_id, ts=ts_text(ledger.periods.booking_ts(month, now)),
            customer_id=c.customer_id, feed="", meter="credit",
            quantity=minor_units(c.amount, c.currency), resource=c.currency.upper(),
            kind="credit", reason=reason, actor=c.actor)
        appended = ledger.append_entries(lambda _cur: [row])
        return appended[0] if appended else _existing(ledger, usage_id)

    def build(cur: Cursor) -> list[LedgerRow]:
        found = cur.execute(f"SELECT {SELECT} FROM usage_ledger WHERE usage_id = ?",
                            (c.usage_id,)).fetchone()
        if found is None:
            raise NotFound(f"no usage row {c.usage_id!r}", usage_id=c.usage_id)
        original = from_db(found)
        if original.kind not in ORIGINAL_KINDS:
            raise Conflict(f"{original.usage_id} is a {original.kind} entry; correct the usage "
                           f"row it refers to ({original.corrects or 'none'})",
                           usage_id=original.usage_id)
        net = net_of(cur, original)
        change = -net if c.kind == "void" else (c.quantity or 0) - net
        if change == 0:
            what = "already void" if c.kind == "void" else f"already {net}"
            raise Conflict(f"usage row {original.usage_id} is {what}: nothing to change",
                           usage_id=original.usage_id)
        booked = (original.ts if ledger.periods.is_open(original.month, now)
                  else ts_text(now))
        return [msgspec.structs.replace(
            original, usage_id=usage_id, ts=booked, quantity=change, kind=c.kind,
            corrects=original.usage_id, reason=reason, actor=c.actor,
            original_ts=original.original_ts or original.ts, seq=0, prev_hash="", row_hash="")]

    appended = ledger.append_entries(build)
    return appended[0] if appended else _existing(ledger, usage_id)


def _existing(ledger: Ledger, usage_id: str) -> LedgerRow:
    row = ledger.get(usage_id)
    if row is None:  # pragma: no cover - appended rows are never removed
        raise Conflict(f"correction {usage_id} was not recorded")
    return row
