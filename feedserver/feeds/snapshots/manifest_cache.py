"""A bounded in-memory cache of published snapshot manifests.

A published version's ``manifest.json`` is never rewritten: publication writes it before the
pointer names the version, retention moves the pointer before deleting anything, and the next
version always gets a new number (the highest listed plus one). A version number comes back
only when a snapshot's pointer is deleted and the identifier published again from scratch;
the pointer's ``lineage`` (minted when the pointer is first written, kept by every later
publish) then changes, and it is part of the key. So ``(prefix, identifier, lineage,
version)`` names one manifest for good, and a cached one is right whenever the pointer still
lists its version. The pointer itself is mutable: every request follows it as it is now (read,
or on local files found unchanged by one ``stat``: ``pointers``), never a cached copy of it.

Bounded by the encoded size of the manifests held (a manifest with thousands of chunks is
large), least recently used evicted first; a retired version's manifest is never asked for
again (the pointer no longer lists it) and ages out. Thread-safe: the stores are called from
worker threads. Manifests handed out are shared: callers never mutate them.

The cache also remembers, per snapshot, the version the last pointer read named current
(``note_current``/``current``): a HINT, never an answer. A download may start fetching the
hinted version's first bytes while it reads the pointer, and keeps them only if the pointer
names that very manifest (``api/snapshots.py``); every answer still follows the pointer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from feedserver.feeds.snapshots.manifest import Manifest

# Encoded manifest bytes held at most per cache (the decoded records take a few times that).
CACHE_BYTES = 16 * 1024 * 1024

Key = tuple[str, str, str, int]  # (prefix, identifier, lineage, version)
# Snapshots whose current version is remembered at most (only published ones are ever noted).
CURRENT_ENTRIES = 65536


class ManifestCache:
    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Key, tuple[Manifest, int]] = OrderedDict()
        self._bytes = 0
        self._current: dict[tuple[str, str], Key] = {}
        self._lock = threading.Lock()

    def get(self, key: Key) -> Manifest | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Key, manifest: Manifest, size: int) -> None:
        """Keep ``manifest`` (``size``: its encoded bytes) unless it alone exceeds the bound."""
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (manifest, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def note_current(self, key: Key) -> None:
        """A pointer read just now named ``key``'s version current."""
        with self._lock:
            where = (key[0], key[1])
            self._current.pop(where, None)
            self._current[where] = key
            if len(self._current) > CURRENT_ENTRIES:
                del self._current[next(iter(self._current))]

    def current(self, prefix: str, identifier: str) -> Manifest | None:
        """The cached manifest of the version the last pointer read of ``identifier`` named
        current, or None: a hint only (the pointer may have moved since)."""
        with self._lock:
            key = self._current.get((prefix, identifier))
            item = self._items.get(key) if key is not None else None
            return item[0] if item is not None else None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return self._bytes
