"""On-demand's reads of a remote state store (PostgreSQL): on the event loop, and cached.

``RemoteState.find_by_name`` answers from a per-process cache of reads by name, else reads
through ``AsyncReads`` (an autocommit connection on the event loop: no worker-thread hop,
which cost more than the round trip itself). The state store is written by other processes
(the events consumer, a snapshot load, a diff's advance), so the cache is invalidated by the
database itself: a trigger on the state table notifies every changed name on
``state.CHANNEL`` (``state.NOTIFY_MIGRATION``) and ``follow`` drops those names as the
notifications arrive, on a ``LISTEN`` connection of its own.

What a lookup may see (the bound docs/api.md promises):

* while listening, a committed change is invisible only until its notification is handled
  (normally milliseconds after the writer's commit);
* a read racing a change is not kept: ``ticket()`` before the read, ``put`` after it, and any
  notification meanwhile (``generation`` moved) makes ``put`` a no-op;
* when listening fails (a dropped or silent connection: see ``PostgresDatabase.listen``), the
  cache is emptied and bypassed until ``LISTEN`` is back, and only reads started afterwards
  are kept;
* whatever happens, an entry is never served more than ``max_age`` seconds after its read
  began (the bound if a notification could still be missed in a way nobody noticed).

The cache is used from the event loop only (the handler and ``follow`` are both there), so it
needs no lock. Entries are lists of decoded ``Article`` that nobody mutates; they are counted
by the bytes read (the encoded articles), which the decoded ones take about as much of.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import NamedTuple, Protocol, runtime_checkable

import anyio
import msgspec

from feedserver.errors import StorageError
from feedserver.feeds.events.state import CHANNEL, articles_of, by_name, name_key
from feedserver.models import Article
from feedserver.storage.db import Params, Row

log = logging.getLogger(__name__)

KEEPALIVE = 5.0  # seconds of quiet before the listener proves its connection
RETRY = 1.0  # seconds between attempts to listen again
ENTRY_BYTES = 256  # counted for each entry besides its articles (a title not found is one)


@runtime_checkable
class Notifier(Protocol):
    """A database that can ``LISTEN`` (``PostgresDatabase`` fits)."""

    def listen(self, channel: str, *, keepalive: float
               ) -> AbstractAsyncContextManager[AsyncIterator[str]]: ...


class AsyncReader(Protocol):
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...


@runtime_checkable
class RemoteDatabase(Notifier, Protocol):
    """A database read over the network that can ``LISTEN`` (``PostgresDatabase`` fits)."""

    def async_reads(self) -> AbstractAsyncContextManager[AsyncReader]: ...


class Ticket(msgspec.Struct, frozen=True):
    """Taken before a read: which invalidations it may have missed, and when it began."""

    generation: int
    at: float


class _Entry(NamedTuple):
    at: float  # when the read began
    articles: list[Article]
    size: int  # bytes read: what the cache counts against its capacity


class StateCache:
    """``find_by_name`` results by (name, project or None), at most ``capacity`` bytes of
    them (as read), least recently used title first out."""

    def __init__(self, capacity: int, max_age: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self._clock = clock
        self._names: OrderedDict[str, dict[str | None, _Entry]] = OrderedDict()
        self.size = 0
        self.generation = 0
        self.live = False  # listening: entries are kept and served only then

    def __len__(self) -> int:
        return len(self._names)

    def ticket(self) -> Ticket:
        return Ticket(self.generation, self._clock())

    def get(self, name: str, project: str | None) -> list[Article] | None:
        """The live articles named ``name`` (in ``project``, or all), or None: not cached."""
        if not self.live:
            return None
        key = name_key(name)
        reads = self._names.get(key)
        if reads is None or (hit := reads.get(project)) is None:
            return None
        if self._clock() - hit.at > self.max_age:
            del reads[project]
            self.size -= hit.size
            return None
        self._names.move_to_end(key)
        return hit.articles

    def put(self, name: str, project: str | None, articles: list[Article], size: int,
            ticket: Ticket) -> None:
        """Keep what a read that took ``ticket`` found (``size`` bytes), unless something
        changed meanwhile."""
        size += ENTRY_BYTES
        if not self.live or ticket.generation != self.generation or size > self.capacity:
            return
        key = name_key(name)
        reads = self._names.setdefault(key, {})
        old = reads.get(project)
        reads[project] = _Entry(ticket.at, articles, size)
        self.size += size - (old.size if old else 0)
        self._names.move_to_end(key)
        while self.size > self.capacity:
            self._drop(next(iter(self._names)))

    def _drop(self, key: str) -> None:
        reads = self._names.pop(key, None)
        if reads:
            self.size -= sum(entry.size for entry in reads.values())

    def invalidate(self, name: str) -> None:
        """``name`` changed (``""``: everything may have)."""
        self.generation += 1
        if name:
            self._drop(name)
        else:
            self._names.clear()
            self.size = 0

    def suspend(self) -> None:
        """Not listening: forget everything and keep nothing until ``resume``."""
        self.live = False
        self.invalidate("")

    def resume(self) -> None:
        """Listening (again): reads that start from now on may be kept."""
        self.generation += 1
        self.live = True


class RemoteState:
    """``find_by_name`` for one project or all, from ``cache`` or read through ``reads``."""

    def __init__(self, cache: StateCache, reads: AsyncReader) -> None:
        self.cache = cache
        self.reads = reads

    async def find_by_name(self, name: str, project: str | None, *, limit: int
                           ) -> list[Article]:
        """The live articles named ``name`` in ``project`` (or all), at most ``limit``.
        Raises ``StorageError``."""
        articles = self.cache.get(name, project)
        if articles is None:
            ticket = self.cache.ticket()
            rows = await self.reads.fetchall(*by_name(name, [project] if project else None,
                                                      limit))
            articles = articles_of(rows)
            if len(articles) < limit:  # complete: a cut list would answer a larger limit
                size = sum(len(row[0]) for row in rows)
                self.cache.put(name, project, articles, size, ticket)
        return articles if len(articles) <= limit else articles[:limit]


async def follow(cache: StateCache, db: Notifier, *, keepalive: float = KEEPALIVE,
                 retry: float = RETRY) -> None:
    """Keep ``cache`` in step with the state store until cancelled: listen, drop each name
    notified; on a failure suspend the cache, wait ``retry`` seconds and listen again."""
    while True:
        try:
            async with db.listen(CHANNEL, keepalive=keepalive) as names:
                cache.resume()
                async for name in names:
                    cache.invalidate(name)
        except StorageError as exc:
            log.warning("state cache suspended: %s", exc)
        finally:
            cache.suspend()
        await anyio.sleep(retry)
