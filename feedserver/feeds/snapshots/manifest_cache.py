"""A bounded in-memory cache of published snapshot manifests.

A published version's ``manifest.json`` is never rewritten: publication writes it before the
pointer names the version, retention moves the pointer before deleting anything, and the next
version always gets a new number (the highest listed plus one). A version number comes back
only when a snapshot's pointer is deleted and the identifier published again from scratch;
the pointer's ``lineage`` (minted when the pointer is first written, kept by every later
publish) then changes, and it is part of the key. So ``(prefix, identifier, lineage,
version)`` names one manifest for good, and a cached one is right whenever the pointer still
lists its version. The pointer itself is mutable: it is read by every request, never cached.

Bounded by the encoded size of the manifests held (a manifest with thousands of chunks is
large), least recently used evicted first; a retired version's manifest is never asked for
again (the pointer no longer lists it) and ages out. Thread-safe: the stores are called from
worker threads. Manifests handed out are shared: callers never mutate them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from feedserver.feeds.snapshots.manifest import Manifest

# Encoded manifest bytes held at most per cache (the decoded records take a few times that).
CACHE_BYTES = 16 * 1024 * 1024

Key = tuple[str, str, str, int]  # (prefix, identifier, lineage, version)


class ManifestCache:
    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Key, tuple[Manifest, int]] = OrderedDict()
        self._bytes = 0
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

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return self._bytes
