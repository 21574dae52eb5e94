"""Bounded caches of fetched revisions, so a replay does not ask the wiki again.

A revision's text never changes, but its visibility can (revision deletion, suppression): the
client calls ``forget`` for the revisions a visibility change names, and a cached answer is
never more visible than the wiki's at the time it was fetched. Revisions the wiki did not know
(deleted pages, which may be restored) are never cached.

- ``MemoryRevisionCache``: least recently used, bounded by entries and by text bytes;
- ``DatabaseRevisionCache``: the same in a table of the feedserver database (survives restarts,
  shared by consumer processes), pruned to ``max_entries`` rows.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec

from feedserver.ingest.revision import WikiRevision
from feedserver.storage.db import Database

CacheKey = tuple[str, int]  # (project, revision id)
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(WikiRevision)


class RevisionCache(Protocol):
    async def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, WikiRevision]: ...

    async def put_many(self, revisions: Iterable[WikiRevision]) -> None: ...

    async def forget(self, keys: Sequence[CacheKey]) -> None: ...


class MemoryRevisionCache:
    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[CacheKey, WikiRevision] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    async def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, WikiRevision]:
        out: dict[CacheKey, WikiRevision] = {}
        for key in keys:
            rev = self._items.get(key)
            if rev is not None:
                self._items.move_to_end(key)
                out[key] = rev
        return out

    async def put_many(self, revisions: Iterable[WikiRevision]) -> None:
        for rev in revisions:
            key = (rev.project, rev.revision)
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= _size(old)
            self._items[key] = rev
            self._bytes += _size(rev)
        while self._items and (len(self._items) > self.max_entries
                               or self._bytes > self.max_bytes):
            _, dropped = self._items.popitem(last=False)
            self._bytes -= _size(dropped)

    async def forget(self, keys: Sequence[CacheKey]) -> None:
        for key in keys:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= _size(old)


def _size(rev: WikiRevision) -> int:
    return len(rev.text or "") + 256


MIGRATION = (
    "CREATE TABLE IF NOT EXISTS revision_cache (project TEXT NOT NULL, revision BIGINT NOT NULL,"
    " stored_ns BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (project, revision))",
    "CREATE INDEX IF NOT EXISTS revision_cache_stored ON revision_cache (stored_ns)",
)
_UPSERT = ("INSERT INTO revision_cache (project, revision, stored_ns, data) VALUES (?, ?, ?, ?) "
           "ON CONFLICT (project, revision) DO UPDATE SET stored_ns = excluded.stored_ns, "
           "data = excluded.data")
_PRUNE = ("DELETE FROM revision_cache WHERE stored_ns < (SELECT stored_ns FROM revision_cache "
          "ORDER BY stored_ns DESC LIMIT 1 OFFSET ?)")


class DatabaseRevisionCache:
    """Rows in ``revision_cache``; pruned to ``max_entries`` every ``prune_every`` writes."""

    def __init__(self, db: Database, max_entries: int = 100_000, prune_every: int = 1_000
                 ) -> None:
        self.db = db
        self.max_entries = max_entries
        self.prune_every = prune_every
        self._writes = 0
        db.migrate("sources.revision_cache.1", MIGRATION)

    async def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, WikiRevision]:
        if not keys:
            return {}
        return await asyncio.to_thread(self._get_sync, list(keys))

    def _get_sync(self, keys: list[CacheKey]) -> dict[CacheKey, WikiRevision]:
        out: dict[CacheKey, WikiRevision] = {}
        by_project: dict[str, list[int]] = {}
        for project, rev in keys:
            by_project.setdefault(project, []).append(rev)
        for project, ids in by_project.items():
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                rows = self.db.fetchall(
                    "SELECT data FROM revision_cache WHERE project = ? AND revision IN "
                    f"({', '.join('?' for _ in part)})", [project, *part])
                for (data,) in rows:
                    found = _DECODER.decode(bytes(data))
                    out[(found.project, found.revision)] = found
        return out

    async def put_many(self, revisions: Iterable[WikiRevision]) -> None:
        now = time.time_ns()
        rows = [(r.project, r.revision, now + i, _ENCODER.encode(r))
                for i, r in enumerate(revisions)]
        if not rows:
            return
        await asyncio.to_thread(self.db.executemany, _UPSERT, rows)
        self._writes += len(rows)
        if self._writes >= self.prune_every:
            self._writes = 0
            await asyncio.to_thread(self.db.execute, _PRUNE, (self.max_entries - 1,))

    async def forget(self, keys: Sequence[CacheKey]) -> None:
        await asyncio.to_thread(
            self.db.executemany,
            "DELETE FROM revision_cache WHERE project = ? AND revision = ?", list(keys))
