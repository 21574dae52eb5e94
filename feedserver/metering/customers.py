"""Who a customer is and which plan they pay for, as reports and the CLI need it.

Metering stores only ``customer_id``. Names and plans belong to ``feedserver.accounts``:
``customer_directory(db)`` reads its customers and plans once (a report's worth of lookups) and
falls back to "every id stands for itself, unpriced" when the accounts tables do not exist
(metering used without accounts): reports then still total usage, with empty invoices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from feedserver.accounts import repository, schema
from feedserver.errors import NotFound, StorageError
from feedserver.plans import UNLIMITED, Plan
from feedserver.storage.db import Database


class CustomerDirectory(Protocol):
    def resolve(self, name_or_id: str) -> str:
        """The customer id for a name or id; raises ``NotFound``."""

    def terms(self, customer_id: str) -> Plan:
        """The customer's plan (``UNLIMITED`` for an unknown id or a plan that is gone)."""

    def name(self, customer_id: str) -> str:
        """The customer's name (the id itself when unknown)."""


class StaticDirectory:
    """A fixed ``{customer_id: (name, plan)}`` map; unknown ids pass through unpriced."""

    def __init__(self, customers: Mapping[str, tuple[str, Plan | None]] | None = None) -> None:
        self._customers = dict(customers or {})

    def resolve(self, name_or_id: str) -> str:
        if name_or_id in self._customers or not self._customers:
            return name_or_id
        for cid, (name, _plan) in self._customers.items():
            if name == name_or_id:
                return cid
        raise NotFound(f"customer {name_or_id!r} not found")

    def terms(self, customer_id: str) -> Plan:
        entry = self._customers.get(customer_id)
        return UNLIMITED if entry is None or entry[1] is None else entry[1]

    def name(self, customer_id: str) -> str:
        entry = self._customers.get(customer_id)
        return customer_id if entry is None else entry[0]


def customer_directory(db: Database) -> CustomerDirectory:
    try:
        schema.migrate(db)  # a database last opened by an older version
        plans = {plan.name: plan for plan in repository.list_plans(db)}
        customers = repository.list_customers(db)
    except StorageError:  # no accounts tables in this database
        return StaticDirectory()
    return StaticDirectory({c.id: (c.name, plans.get(c.plan)) for c in customers})


def stripe_customer_ids(db: Database) -> dict[str, str]:
    """``{customer_id: Stripe customer id}`` of the customers that have one."""
    try:
        schema.migrate(db)
        customers = repository.list_customers(db)
    except StorageError:
        return {}
    return {c.id: c.stripe_customer_id for c in customers if c.stripe_customer_id}
