"""A small, bounded, thread-safe TTL cache of authenticated principals.

Every API request authenticates, so the hot path keeps the answer for a couple of seconds
instead of querying the database each time. Revocation in this process drops the entry at
once; another process (several API workers) sees it within ``ttl`` seconds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, now: float) -> V | None:
        # A hit takes no lock (every request asks: one dict read is atomic under the GIL);
        # an expired entry is removed under the lock, and only if no ``put`` replaced it.
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            with self._lock:
                if self._items.get(key) is item:
                    del self._items[key]
            return None
        return item[1]

    def put(self, key: Hashable, value: V, now: float, until: float | None = None) -> None:
        if self.ttl <= 0:
            return
        expires = now + self.ttl if until is None else min(now + self.ttl, until)
        with self._lock:
            self._items[key] = (expires, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
