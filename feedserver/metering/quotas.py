"""Monthly quota counters in the shared database, so every server process agrees.

Consuming is one transaction: an optional *claim* (``quota_claims``, unique per customer, month,
quota and key; a download id makes the parallel Range requests of one snapshot version count
once), then ``UPDATE quota_usage SET used = used + n WHERE ... AND used + n <= limit``. No row
updated means the quota is used up: the transaction (claim included) rolls back and
``QuotaExceeded`` carries ``retry_after`` = seconds to the next UTC month.

The ``bytes`` counter is not consumed here: its size is only known after delivery, so the
ledger adds committed bytes to it (``feedserver.metering.ledger``) and admission refuses new
byte-serving requests once it is reached.
"""

from __future__ import annotations

import math
from datetime import datetime

from feedserver.errors import QuotaExceeded
from feedserver.metering.months import seconds_to_month_end
from feedserver.plans import QuotaName
from feedserver.storage.db import Cursor, Database


def quota_exceeded(quota: QuotaName, limit: int, now: datetime) -> QuotaExceeded:
    retry = math.ceil(seconds_to_month_end(now))
    return QuotaExceeded(
        f"monthly {quota.replace('_', ' ')} quota of {limit} is used up; it resets at the "
        "start of the next month (UTC)",
        quota=quota, limit=limit, retry_after=retry,
    )


class QuotaCounters:
    def __init__(self, db: Database) -> None:
        self.db = db

    def consume(
        self,
        customer_id: str,
        month: str,
        quota: QuotaName,
        limit: int | None,
        now: datetime,
        *,
        amount: int = 1,
        claim: str | None = None,
    ) -> int:
        """Count ``amount`` against the quota; returns the new ``used``. Raises QuotaExceeded."""
        with self.db.transaction() as cur:
            if claim is not None and cur.execute(
                "INSERT INTO quota_claims (customer_id, month, meter, claim_key) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (customer_id, month, quota, claim),
            ).rowcount == 0:
                return self._used(cur, customer_id, month, quota)  # already counted
            cur.execute(
                "INSERT INTO quota_usage (customer_id, month, meter, used) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (customer_id, month, meter) DO NOTHING",
                (customer_id, month, quota),
            )
            if limit is None:
                cur.execute(
                    "UPDATE quota_usage SET used = used + ? "
                    "WHERE customer_id = ? AND month = ? AND meter = ?",
                    (amount, customer_id, month, quota),
                )
            elif cur.execute(
                "UPDATE quota_usage SET used = used + ? "
                "WHERE customer_id = ? AND month = ? AND meter = ? AND used + ? <= ?",
                (amount, customer_id, month, quota, amount, limit),
            ).rowcount == 0:
                raise quota_exceeded(quota, limit, now)
            return self._used(cur, customer_id, month, quota)

    def lease(self, customer_id: str, month: str, quota: QuotaName, limit: int | None,
              now: datetime, want: int) -> tuple[int, int]:
        """Count up to ``want`` units at once, at least one: ``(granted, used)``, ``used``
        including the grant. Never beyond ``limit``: raises QuotaExceeded when not even one
        unit is left."""
        # The common case, the counter exists and has room for all ``want``: the conditional
        # update alone, one statement (on PostgreSQL one round trip instead of six; atomic by
        # itself), granting what the transaction below would. Anything else takes it.
        grant = max(1, want)
        row = self.db.fetchone(
            "UPDATE quota_usage SET used = used + ? "
            "WHERE customer_id = ? AND month = ? AND meter = ? AND used + ? <= ? RETURNING used",
            (grant, customer_id, month, quota, grant, limit if limit is not None else 2**62))
        if row is not None:
            return grant, int(row[0])
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO quota_usage (customer_id, month, meter, used) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (customer_id, month, meter) DO NOTHING",
                (customer_id, month, quota),
            )
            grant = max(1, want)
            if limit is not None:
                grant = min(grant, limit - self._used(cur, customer_id, month, quota))
            # conditional, so a concurrent writer between the read and here cannot push the
            # counter past the limit (PostgreSQL reads committed data)
            for n in dict.fromkeys((grant, 1)):
                if n >= 1 and cur.execute(
                    "UPDATE quota_usage SET used = used + ? "
                    "WHERE customer_id = ? AND month = ? AND meter = ? AND used + ? <= ?",
                    (n, customer_id, month, quota, n, limit if limit is not None else 2**62),
                ).rowcount:
                    return n, self._used(cur, customer_id, month, quota)
            assert limit is not None
            raise quota_exceeded(quota, limit, now)

    def give_back(self, customer_id: str, month: str, quota: QuotaName, units: int) -> None:
        """Return leased units never spent (a server stopping)."""
        self.db.execute(
            "UPDATE quota_usage SET used = CASE WHEN used > ? THEN used - ? ELSE 0 END "
            "WHERE customer_id = ? AND month = ? AND meter = ?",
            (units, units, customer_id, month, quota),
        )

    @staticmethod
    def _used(cur: Cursor, customer_id: str, month: str, quota: str) -> int:
        row = cur.execute(
            "SELECT used FROM quota_usage WHERE customer_id = ? AND month = ? AND meter = ?",
            (customer_id, month, quota),
        ).fetchone()
        return int(row[0]) if row else 0

    def used(self, customer_id: str, month: str, quota: QuotaName) -> int:
        row = self.db.fetchone(
            "SELECT used FROM quota_usage WHERE customer_id = ? AND month = ? AND meter = ?",
            (customer_id, month, quota),
        )
        return int(row[0]) if row else 0

    def all_used(self, month: str, customer_id: str | None = None) -> dict[str, dict[str, int]]:
        """``{customer_id: {quota: used}}`` for a month."""
        sql = "SELECT customer_id, meter, used FROM quota_usage WHERE month = ?"
        params: list[str] = [month]
        if customer_id is not None:
            sql += " AND customer_id = ?"
            params.append(customer_id)
        out: dict[str, dict[str, int]] = {}
        for cust, meter, used in self.db.fetchall(sql, params):
            out.setdefault(str(cust), {})[str(meter)] = int(used)
        return out
