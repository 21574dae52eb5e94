"""On-demand's state cache: what it may answer, given the notifications it was told about.

The promise (docs/api.md): a cached read is dropped by any notification of its title, a read
that raced a notification is never kept, nothing is kept or served while not listening, and
no entry is served after ``max_age`` whatever happened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.errors import StorageError
from feedserver.feeds.events.state import CHANNEL
from feedserver.feeds.events.state_cache import (
    ENTRY_BYTES,
    Notifier,
    RemoteState,
    StateCache,
    follow,
)
from feedserver.models import Article, Namespace, Project
from feedserver.storage.db import Params, Row


def article(name: str, wiki: str = "enwiki", page_id: int = 1) -> Article:
    return Article(name=name, identifier=page_id, namespace=Namespace(identifier=0),
                   is_part_of=Project(identifier=wiki))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live_cache(capacity: int = 100_000, max_age: float = 60.0, clock: Clock | None = None
               ) -> StateCache:
    cache = StateCache(capacity, max_age, clock=clock or Clock())
    cache.resume()
    return cache


def test_nothing_is_kept_or_served_before_listening() -> None:
    cache = StateCache(100_000, 60.0)
    cache.put("Earth", None, [article("Earth")], 1000, cache.ticket())
    assert cache.get("Earth", None) is None
    cache.resume()
    # A read that began before LISTEN may have missed a change: still not kept.
    assert len(cache) == 0


def test_a_read_is_kept_per_title_and_project() -> None:
    cache = live_cache()
    found = [article("Earth")]
    cache.put("Earth", "enwiki", found, 1000, cache.ticket())
    assert cache.get("Earth", "enwiki") is found
    assert cache.get("Earth", None) is None  # all projects is another read
    # Spaces and underscores are the same title (as the state store compares them).
    assert cache.get("Earth", "enwiki") is cache.get("Earth", "enwiki")
    cache.put("New_York", None, [article("New York")], 1000, cache.ticket())
    assert cache.get("New York", None) is not None


def test_a_notification_drops_every_read_of_that_title() -> None:
    cache = live_cache()
    for project in (None, "enwiki", "dewiki"):
        cache.put("New York", project, [], 1000, cache.ticket())
    cache.put("Paris", None, [], 1000, cache.ticket())
    cache.invalidate("New York")  # names are notified as stored: with spaces
    assert [cache.get("New_York", p) for p in (None, "enwiki", "dewiki")] == [None] * 3
    assert cache.get("Paris", None) == []
    cache.invalidate("")  # TRUNCATE: everything
    assert cache.get("Paris", None) is None


def test_a_read_racing_a_notification_is_not_kept() -> None:
    cache = live_cache()
    ticket = cache.ticket()
    cache.invalidate("Unrelated")  # any notification: the read may predate a change
    cache.put("Earth", None, [article("Earth")], 1000, ticket)
    assert cache.get("Earth", None) is None


def test_suspend_forgets_and_keeps_nothing_until_resumed() -> None:
    cache = live_cache()
    cache.put("Earth", None, [], 1000, cache.ticket())
    ticket = cache.ticket()
    cache.suspend()
    assert cache.get("Earth", None) is None
    cache.put("Earth", None, [], 1000, cache.ticket())
    cache.resume()
    cache.put("Earth", None, [], 1000, ticket)  # began before the connection was lost
    assert cache.get("Earth", None) is None


def test_an_entry_is_served_at_most_max_age_after_its_read_began() -> None:
    clock = Clock()
    cache = live_cache(max_age=5.0, clock=clock)
    ticket = cache.ticket()
    clock.now += 2.0  # the read itself took 2 s: counted
    cache.put("Earth", None, [], 1000, ticket)
    clock.now += 3.0
    assert cache.get("Earth", None) == []
    clock.now += 0.01
    assert cache.get("Earth", None) is None


def test_least_recently_used_titles_go_first() -> None:
    cache = live_cache(capacity=2 * (1000 + ENTRY_BYTES))  # room for two reads
    for name in ("A", "B"):
        cache.put(name, None, [], 1000, cache.ticket())
    assert cache.get("A", None) == []  # A is now the most recently used
    cache.put("C", None, [], 1000, cache.ticket())
    assert cache.get("B", None) is None
    assert cache.get("A", None) == [] and cache.get("C", None) == []


def test_zero_bytes_keeps_nothing() -> None:
    cache = live_cache(capacity=0)
    cache.put("A", None, [], 0, cache.ticket())
    assert cache.get("A", None) is None


def test_the_bytes_kept_are_counted_and_bounded() -> None:
    cache = live_cache(capacity=10_000)
    cache.put("Big", None, [], 10_000, cache.ticket())  # more than the whole cache: not kept
    assert cache.get("Big", None) is None and cache.size == 0
    cache.put("Missing", None, [], 0, cache.ticket())  # a title not found costs its entry
    cache.put("A", "enwiki", [], 3000, cache.ticket())
    cache.put("A", None, [], 3000, cache.ticket())
    cache.put("A", None, [], 2000, cache.ticket())  # read again: replaces, not adds
    assert cache.size == 3 * ENTRY_BYTES + 5000
    cache.invalidate("A")
    assert cache.size == ENTRY_BYTES
    for name in "BCDEFG":  # 6 x (2000 + ENTRY_BYTES) > 10,000: the oldest go
        cache.put(name, None, [], 2000, cache.ticket())
        assert cache.size <= cache.capacity
    assert cache.get("Missing", None) is None and cache.get("G", None) == []


# One step of a run: a write of a title (its notification handled), the start of a read, the
# end of a read started earlier (its result offered to the cache), or a lookup.
STEP = st.one_of(
    st.tuples(st.just("write"), st.sampled_from("ab")),
    st.tuples(st.just("begin"), st.sampled_from("ab")),
    st.tuples(st.just("end"), st.integers(0, 7)),
    st.tuples(st.just("get"), st.sampled_from("ab")),
)


@given(st.lists(STEP, max_size=40))
def test_a_lookup_never_sees_an_overwritten_state(steps: list[tuple[str, object]]) -> None:
    # The database's state of each title is a version number; a read sees the version at its
    # start. Whatever the interleaving, the cache answers the current version or nothing.
    cache = live_cache()
    db = {"a": 0, "b": 0}
    reads: list[tuple[str, int, object]] = []
    for op, arg in steps:
        if op == "write":
            db[str(arg)] += 1
            cache.invalidate(str(arg))
        elif op == "begin":
            reads.append((str(arg), db[str(arg)], cache.ticket()))
        elif op == "end" and reads:
            name, version, ticket = reads.pop(int(str(arg)) % len(reads))
            cache.put(name, None, [article(name, page_id=version + 1)], 1000, ticket)  # type: ignore[arg-type]
        elif op == "get":
            hit = cache.get(str(arg), None)
            assert hit is None or hit[0].identifier == db[str(arg)] + 1


class Listener:
    """A ``Notifier`` whose connections deliver the names given, then fail (or wait)."""

    def __init__(self, sessions: list[list[str]]) -> None:
        self.sessions = sessions
        self.opened = 0
        self.done = asyncio.Event()

    @asynccontextmanager
    async def listen(self, channel: str, *, keepalive: float) -> AsyncIterator[
        AsyncIterator[str]
    ]:
        assert channel == CHANNEL
        if self.opened >= len(self.sessions):
            self.done.set()
            await asyncio.sleep(3600)
        names = self.sessions[self.opened]
        self.opened += 1

        async def payloads() -> AsyncIterator[str]:
            for name in names:
                yield name
            raise StorageError("connection lost")

        yield payloads()


async def test_follow_invalidates_and_suspends_while_the_connection_is_down() -> None:
    cache = StateCache(100_000, 60.0)
    seen: list[bool] = []

    class Recording(Listener):
        @asynccontextmanager
        async def listen(self, channel: str, *, keepalive: float) -> AsyncIterator[
            AsyncIterator[str]
        ]:
            seen.append(cache.live)  # never live between two connections
            async with super().listen(channel, keepalive=keepalive) as names:
                cache.put("Kept", None, [], 1000, cache.ticket())  # before resume: not kept
                yield names

    listener = Recording([["Earth"], [""]])
    assert isinstance(listener, Notifier)
    task = asyncio.create_task(follow(cache, listener, keepalive=1.0, retry=0.0))
    try:
        await asyncio.wait_for(listener.done.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert listener.opened == 2 and seen == [False, False, False]
    assert not cache.live and len(cache) == 0


class Reads:
    """An ``AsyncReader`` over fixed rows of encoded articles, counting the reads."""

    def __init__(self, articles: list[Article]) -> None:
        self.rows = [(msgspec.json.encode(a),) for a in articles]
        self.queries: list[list[object]] = []

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        assert sql.startswith("SELECT article FROM article_state WHERE name = ?")
        self.queries.append(list(params))
        return list(self.rows)


async def test_remote_state_reads_once_per_title_and_project() -> None:
    reads = Reads([article("Earth", "dewiki"), article("Earth", "enwiki")])
    remote = RemoteState(live_cache(), reads)
    first = await remote.find_by_name("Earth", None, limit=200)
    assert [a.is_part_of.identifier for a in first] == ["dewiki", "enwiki"]
    assert await remote.find_by_name("Earth", None, limit=200) is first
    await remote.find_by_name("Earth", "enwiki", limit=200)  # another read: its own query
    assert reads.queries == [["Earth", 200], ["Earth", "enwiki", 200]]


async def test_remote_state_never_keeps_a_cut_list() -> None:
    # As many rows as the limit: there may be more, which a larger limit would want.
    reads = Reads([article("Earth", "dewiki"), article("Earth", "enwiki")])
    remote = RemoteState(live_cache(), reads)
    for _ in range(2):
        assert len(await remote.find_by_name("Earth", None, limit=2)) == 2
    assert len(reads.queries) == 2
