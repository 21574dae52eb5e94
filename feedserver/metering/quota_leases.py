"""Quota units counted ahead, a few at a time: on-demand lookups without a database write each.

Every on-demand lookup consumes one ``ondemand_lookups`` unit. Counting each one in the shared
counter was a write transaction plus a worker-thread hop per lookup. A process instead
*leases* units: one conditional update adds ``n`` to the shared counter (never past the
limit: ``QuotaCounters.lease``), and the next ``n`` lookups spend them in memory.

* The quota is never exceeded: leased units are counted before any is spent.
* The lease grows with the room left: 1 unit while fewer than 32 remain, at most 1/16 of what
  remains and ``MAX_UNITS`` (64), so near the limit every process counts one by one and
  no process can hold units another needs for long.
* Units leased but not spent are given back when the server stops (``give_back``). A process
  that dies (``kill -9``) keeps its unspent units counted: the customer may lose up to
  ``MAX_UNITS`` lookups of that month per crashed process; never gains any. The counter (and
  ``/v1/get-user``) can therefore run ahead of the lookups served by the units live processes
  hold, at most ``MAX_UNITS`` each. Billing is not affected: the ledger bills each lookup
  served, once.
"""

from __future__ import annotations

import threading
from datetime import datetime

import msgspec

from feedserver.metering.quotas import QuotaCounters
from feedserver.plans import QuotaName

MAX_UNITS = 64
_KEPT = 100_000


class _Lease(msgspec.Struct):
    units: int  # leased, not yet spent
    used: int  # the shared counter right after the lease (spent or held)


class QuotaLeases:
    def __init__(self, counters: QuotaCounters) -> None:
        self.counters = counters
        self._leases: dict[tuple[str, str, QuotaName], _Lease] = {}
        self._lock = threading.Lock()

    def try_spend(self, customer: str, month: str, quota: QuotaName) -> int | None:
        """Spend one leased unit without I/O: the units used so far (for headers), or None
        when this process holds none (then ``spend`` in a worker thread)."""
        with self._lock:
            lease = self._leases.get((customer, month, quota))
            if lease is None or lease.units <= 0:
                return None
            lease.units -= 1
            return lease.used - lease.units

    def spend(self, customer: str, month: str, quota: QuotaName, limit: int | None,
              now: datetime) -> int:
        """Spend one unit, leasing more from the shared counter when none is held (blocks on
        the database). Raises QuotaExceeded."""
        used = self.try_spend(customer, month, quota)
        if used is not None:
            return used
        key = (customer, month, quota)
        with self._lock:
            known = self._leases.get(key)
        want = 1 if known is None else units_for(limit, known.used)
        granted, used = self.counters.lease(customer, month, quota, limit, now, want)
        with self._lock:
            if len(self._leases) >= _KEPT:
                self._leases.clear()  # leases then given back are lost to the customer, no more
            self._leases[key] = _Lease(units=granted - 1, used=used)
        return used - (granted - 1)

    def give_back(self) -> int:
        """Return every unspent unit to the shared counters (blocks); returns how many."""
        with self._lock:
            held = [(key, lease.units) for key, lease in self._leases.items() if lease.units]
            self._leases.clear()
        for (customer, month, quota), units in held:
            self.counters.give_back(customer, month, quota, units)
        return sum(units for _, units in held)


def units_for(limit: int | None, used: int) -> int:
    """How many units to lease given the room left (see the module docstring)."""
    if limit is None:
        return MAX_UNITS
    return max(1, min(MAX_UNITS, (limit - used) // 16))
