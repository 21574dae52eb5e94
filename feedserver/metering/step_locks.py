"""One lock per key, for database steps that must be taken one at a time per key.

A process leases from shared counters in the database (rate-limit tokens, ``ratelimit``;
lookup units, ``quota_leases``) from several worker threads. Two threads leasing for the same
key at once would each store a lease and the second would replace the first, dropping what it
held: so a key's steps are taken under its own lock, and a thread that waited spends the lease
the one before it took. Steps for different keys do not wait for each other.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

KEPT = 100_000  # keys whose locks are kept (then all made afresh)


class StepLocks(Generic[K]):
    def __init__(self) -> None:
        self._locks: dict[K, threading.Lock] = {}
        self._guard = threading.Lock()  # the dict's growth

    def __call__(self, key: K) -> threading.Lock:
        """The lock ``key``'s steps are taken under."""
        lock = self._locks.get(key)
        if lock is None:
            with self._guard:
                if len(self._locks) >= KEPT:
                    self._locks.clear()
                lock = self._locks.setdefault(key, threading.Lock())
        return lock
