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
needs no lock. Entries are lists of decoded ``Article`` that nobody mutates.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import anyio
import msgspec

from feedserver.errors import StorageError
from feedserver.feeds.events.state import CHANNEL, articles_of, by_name
from feedserver.models import Article
from feedserver.storage.db import Params, Row

log = logging.getLogger(__name__)

KEEPALIVE = 5.0  # seconds of quiet before the listener proves its connection
RETRY = 1.0  # seconds between attempts to listen again


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


def name_key(name: str) -> str:
    """The title as the state store holds it (spaces, not underscores)."""
    return name.replace("_", " ")


class StateCache:
    """``find_by_name`` results by (name, project or None), least recently used first out."""

    def __init__(self, entries: int, max_age: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = entries
        self.max_age = max_age
        self._clock = clock
        self._names: OrderedDict[str, dict[str | None, tuple[float, list[Article]]]] = (
            OrderedDict())
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
        if self._clock() - hit[0] > self.max_age:
            del reads[project]
            return None
        self._names.move_to_end(key)
        return hit[1]

    def put(self, name: str, project: str | None, articles: list[Article],
            ticket: Ticket) -> None:
        """Keep what a read that took ``ticket`` found, unless something changed meanwhile."""
        if not self.live or ticket.generation != self.generation or self.capacity <= 0:
            return
        key = name_key(name)
        self._names.setdefault(key, {})[project] = (ticket.at, articles)
        self._names.move_to_end(key)
        while len(self._names) > self.capacity:
            self._names.popitem(last=False)

    def invalidate(self, name: str) -> None:
        """``name`` changed (``""``: everything may have)."""
        self.generation += 1
        if name:
            self._names.pop(name, None)
        else:
            self._names.clear()

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
                self.cache.put(name, project, articles, ticket)
        return articles[:limit]


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
