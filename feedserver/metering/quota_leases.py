"""Quota units counted ahead, a few at a time: on-demand lookups without a database write each.

Every on-demand lookup consumes one ``ondemand_lookups`` unit. Counting each one in the shared
counter was a write transaction plus a worker-thread hop per lookup. A process instead
*leases* units: one conditional update adds ``n`` to the shared counter (never past the
limit: ``QuotaCounters.lease``), and the next ``n`` lookups spend them in memory.

* The quota is never exceeded: leased units are counted before any is spent.
* The lease grows with the room left: 1 unit while fewer than 32 remain, at most 1/16 of what
  remains and ``MAX_UNITS`` (64), so near the limit every process counts one by one and
  no process can hold units another needs for long.
* A key's leases are taken one at a time: lookups that find the lease spent while another
  thread leases wait for that lease and spend from it. (Each used to lease for itself, and
  each lease stored replaced the one before: its units stayed counted, never spent nor given
  back.)
* Units leased but not spent are given back when the server stops (``give_back``). A process
  that dies (``kill -9``) keeps its unspent units counted: the customer may lose up to
  ``MAX_UNITS`` lookups of that month per crashed process; never gains any. The counter (and
  ``/v1/get-user``) can therefore run ahead of the lookups served by the units live processes
  hold, at most ``MAX_UNITS`` each. Billing is not affected: the ledger bills each lookup
  served, once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

from feedserver.metering.quotas import QuotaCounters
from feedserver.metering.step_locks import StepLocks
from feedserver.plans import QuotaName

MAX_UNITS = 64
_KEPT = 100_000


class _Lease:
    """Units leased and not yet spent: ``next(spend)`` spends one and answers the counter's
    value as of that unit. ``next`` on a range iterator is one atomic step under the GIL, so
    the event loop spends without a lock while a worker thread may lease or give back."""

    __slots__ = ("spend", "used")

    def __init__(self, granted: int, used: int) -> None:
        self.used = used  # the shared counter right after the lease (spent or held)
        # the lease's first unit is spent by ``spend`` itself; these are the other ones
        self.spend: Iterator[int] = iter(range(used - granted + 2, used + 1))


class QuotaLeases:
    def __init__(self, counters: QuotaCounters) -> None:
        self.counters = counters
        self._leases: dict[tuple[str, str, QuotaName], _Lease] = {}
        self._step: StepLocks[tuple[str, str, QuotaName]] = StepLocks()  # a lease at a time
        self._lock = threading.Lock()  # leasing and giving back; spending needs none

    def try_spend(self, customer: str, month: str, quota: QuotaName) -> int | None:
        """Spend one leased unit without I/O: the units used so far (for headers), or None
        when this process holds none (then ``spend`` in a worker thread)."""
        lease = self._leases.get((customer, month, quota))
        return None if lease is None else next(lease.spend, None)

    def spend(self, customer: str, month: str, quota: QuotaName, limit: int | None,
              now: datetime) -> int:
        """Spend one unit, leasing more from the shared counter when none is held (blocks on
        the database). Raises QuotaExceeded."""
        used = self.try_spend(customer, month, quota)
        if used is not None:
            return used
        key = (customer, month, quota)
        with self._step(key):
            # Another thread's lease may have come in while this one waited: spend from it.
            # (Leasing again would replace it, and its units would stay counted, never spent
            # nor given back: lost to the customer.)
            used = self.try_spend(customer, month, quota)
            if used is not None:
                return used
            known = self._leases.get(key)
            want = 1 if known is None else units_for(limit, known.used)
            granted, used = self.counters.lease(customer, month, quota, limit, now, want)
            with self._lock:
                if len(self._leases) >= _KEPT:
                    self._leases.clear()  # leases then given back are lost, no more
                self._leases[key] = _Lease(granted, used)
            return used - (granted - 1)

    def give_back(self) -> int:
        """Return every unspent unit to the shared counters (blocks); returns how many."""
        with self._lock:
            leases = list(self._leases.items())
            self._leases.clear()
        # Each unit is taken from its lease once, by a spender or here (atomic ``next``).
        held = [(key, sum(1 for _ in lease.spend)) for key, lease in leases]
        for (customer, month, quota), units in held:
            if units:
                self.counters.give_back(customer, month, quota, units)
        return sum(units for _, units in held)


def units_for(limit: int | None, used: int) -> int:
    """How many units to lease given the room left (see the module docstring)."""
    if limit is None:
        return MAX_UNITS
    return max(1, min(MAX_UNITS, (limit - used) // 16))
