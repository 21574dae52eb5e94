"""Realtime fan-out: ONE reader of the article topic per process, MANY subscribers.

The reader polls the log and publishes each poll as a ``Tick``: the records as shared
``StreamItem``s (position stamped in, see ``items``) and the reader's positions before and after
it. The hub keeps the most recent ticks in a ring, bounded by ``max_lag`` records and
``max_bytes`` bytes, and each subscriber is only a cursor into that ring plus its positions:

* a subscriber at the head waits (one future, woken by the next tick); the ticks it takes are
  the shared objects, so the stream renders each tick once per *view* (format, partitions,
  entitlements, filters, fields) and every stream of that view writes the same bytes
  (``Tick.memo``): per subscriber the work is per batch, not per record;
* a subscriber behind the head (a slow socket, a burst) takes several ticks at once from the
  ring, at its own pace; nobody waits for it and nothing is read again from the log. Once the
  ring drops a tick it has not taken (it is more than ``max_lag`` records, or ``max_bytes``,
  behind) it is CUT (``SubscriptionClosed("slow", positions)``) and can resume from its
  positions;
* a subscriber asking for positions older than the ring reads the log itself (catch-up, at its
  own pace) until its positions are inside the ring, then continues from the ring: from the
  first tick holding a record it has not seen, skipping records below its positions until its
  positions equal a tick boundary (from then on, whole ticks). Nothing is lost and nothing is
  delivered twice, per partition.

Positions are per partition "next offset to deliver" (Kafka's convention, inclusive on
resume). Memory is the ring (shared) plus a few objects per subscriber, whatever the lag.

The reader survives broker outages: a failing poll closes it and it reopens, after a growing
delay, exactly where it stopped. After each tick it waits ``linger`` seconds, so that under a
steady flow subscribers wake (and write) once per ``linger``, not once per record; with many
subscribers the wait grows (``Hub.pause``) so that the wake-ups (one write each) per second stay
about ``WAKEUPS_PER_SECOND`` per process, adding at most ``MAX_LINGER_SECONDS`` of latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Literal

from feedserver.errors import FeedError, Unavailable
from feedserver.feeds.realtime.items import Chunk, StreamItem, to_item
from feedserver.storage.eventlog import EventLog, LogReader, LogRecord

log = logging.getLogger(__name__)

PARTS = 10  # WME: parts are 0..9 whatever the partition count
CloseReason = Literal["slow", "shutdown"]
Positions = dict[int, int]
BUFFER_BYTES = 64 * 1024 * 1024
TICK_BYTES = 64 * 1024  # a poll is published as ticks of about this size (one record at least)
BATCH_BYTES = 256 * 1024  # what a subscriber takes at once, at most (one tick at least)
LINGER_SECONDS = 0.005
# Subscriber wake-ups (one write each) per second the linger aims at: the pause after a tick
# grows with the subscribers (200: 40 ms, 500 per worker: 100 ms), i.e. with the latency the
# targets allow (200: p99 < 250 ms, 1,000: < 1 s), so a subscriber that keeps up writes
# fewer, larger batches; one subscriber still waits only ``linger``.
WAKEUPS_PER_SECOND = 5_000
MAX_LINGER_SECONDS = 0.1
HOT_TICKS = 64  # ticks whose items keep their decoded dict (for filters / fields)


def partitions_of_parts(parts: Iterable[int], partitions: int) -> list[int]:
    """Partitions covered by WME ``parts``: partition ``q`` is in part ``q * 10 // P``.

    With 50 partitions part ``p`` is partitions ``5p .. 5p+4`` (as WME); with 10, part ``p`` is
    partition ``p``; with fewer than 10 some parts are empty."""
    wanted = set(parts)
    return [q for q in range(partitions) if q * PARTS // partitions in wanted]


class SubscriptionClosed(Exception):
    def __init__(self, reason: CloseReason, positions: Positions) -> None:
        super().__init__(f"subscription closed ({reason})")
        self.reason = reason
        self.positions = positions


class Tick:
    """One poll of the reader: its new records (every partition, offset order per partition)
    and the reader's positions before (``start``) and after (``end``) them. Shared by every
    subscriber; never changed once published, but for the renderings memoised on it."""

    __slots__ = ("_hub", "_memo", "end", "items", "seq", "size", "start")

    def __init__(self, hub: Hub, seq: int, items: list[StreamItem], start: Positions,
                 end: Positions) -> None:
        self._hub = hub
        self.seq = seq
        self.items = items
        self.start = start
        self.end = end
        self.size = sum(len(item.raw) for item in items)
        self._memo: dict[Hashable, Chunk] = {}

    def memo(self, key: Hashable, render: Callable[[Tick], Chunk]) -> Chunk:
        """``render(self)``, computed once per ``key`` (a view) while the tick is in the ring;
        its bytes count against the ring's ``max_bytes``."""
        chunk = self._memo.get(key)
        if chunk is None:
            chunk = render(self)
            if self.seq >= self._hub._base:  # still in the ring: keep it, and count it
                self._memo[key] = chunk
                self.size += chunk.size
                self._hub._bytes += chunk.size
        return chunk


class Batch:
    """What a subscriber takes at once: whole ``ticks`` (its positions were at their start:
    render each for the view, shared) or loose ``items`` (catch-up, or the first ticks after
    a join, filtered for this subscriber) with the positions ``start`` before them."""

    __slots__ = ("items", "partitions", "start", "ticks")

    def __init__(self, partitions: frozenset[int], *, ticks: list[Tick] | None = None,
                 items: list[StreamItem] | None = None, start: Positions | None = None) -> None:
        self.partitions = partitions
        self.ticks = ticks or []
        self.items = items or []
        self.start = start or {}

    def __iter__(self) -> Iterator[StreamItem]:
        """The subscriber's items, in delivery order."""
        for tick in self.ticks:
            yield from (i for i in tick.items if i.partition in self.partitions)
        yield from self.items


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """A subscriber's view: ``await next_batch(timeout)`` gives its next ``Batch`` (None on
    timeout, for heartbeats); ``positions`` is where to resume after what it took."""

    def __init__(self, hub: Hub, positions: Mapping[int, int]) -> None:
        self.hub = hub
        self.positions: Positions = dict(positions)
        self.partitions = frozenset(self.positions)
        self.reason: CloseReason | None = None
        self._cursor: int | None = None  # next tick to take; None: reading the log itself
        self._aligned = False  # positions == the next tick's start: whole ticks
        self._reader: LogReader | None = None
        self._pending: deque[StreamItem] = deque()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def behind(self) -> int:
        """Records between our positions and the hub's reader."""
        return sum(max(0, self.hub.next.get(p, 0) - off) for p, off in self.positions.items())

    @property
    def catching_up(self) -> bool:
        """Reading the log with a reader of its own (older than the hub's ring)."""
        return self._cursor is None

    def _check(self) -> None:
        if self.reason is not None:
            raise SubscriptionClosed(self.reason, dict(self.positions))

    def _close(self, reason: CloseReason) -> None:
        if self.reason is None:
            self.reason = reason
            self._pending.clear()
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            _release(self._waiter)

    async def next_batch(self, timeout: float, max_bytes: int = BATCH_BYTES) -> Batch | None:
        """What there is to deliver (at least one tick or item, about ``max_bytes`` at most),
        waiting up to ``timeout`` seconds; None when nothing came. Raises
        ``SubscriptionClosed`` (slow, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._check()
            if self._cursor is None:
                if self.hub._covers(self.positions):
                    await self._to_ring()
                    continue
                batch = self._take_pending(max_bytes)
                if batch is not None:
                    return batch
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                await self._fetch(remaining)
                continue
            batch = self._take_ticks(max_bytes)
            if batch is not None:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await self._wait(remaining)

    # --- from the ring ------------------------------------------------------------------

    def _take_ticks(self, max_bytes: int) -> Batch | None:
        hub = self.hub
        cursor = self._cursor
        assert cursor is not None
        if cursor < hub._base:  # the ring dropped a tick we had not taken
            hub._cut(self)
            self._check()
        if not self._aligned:
            items: list[StreamItem] = []
            start = dict(self.positions)
            size = 0
            positions = self.positions
            while cursor < hub._head and not self._aligned and size < max_bytes:
                tick = hub._ticks[cursor]
                cursor += 1
                for item in tick.items:
                    at = positions.get(item.partition)
                    if at is None or item.offset < at:
                        continue  # not ours, or delivered before the join
                    positions[item.partition] = item.offset + 1
                    items.append(item)
                    size += len(item.raw)
                end = tick.end
                self._aligned = all(off == end.get(p) for p, off in positions.items())
            self._cursor = cursor
            if items:
                return Batch(self.partitions, items=items, start=start)
            if not self._aligned:
                return None
        ticks: list[Tick] = []
        size = 0
        while cursor < hub._head and size < max_bytes:
            tick = hub._ticks[cursor]
            ticks.append(tick)
            size += tick.size
            cursor += 1
        if not ticks:
            return None
        self._cursor = cursor
        end = ticks[-1].end
        for p in self.partitions:
            self.positions[p] = end[p]
        return Batch(self.partitions, ticks=ticks)

    async def _wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self.hub._waiting.add(self)
        timer = loop.call_later(timeout, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self.hub._waiting.discard(self)

    # --- from the log (older than the ring) ---------------------------------------------

    def _take_pending(self, max_bytes: int) -> Batch | None:
        items: list[StreamItem] = []
        start = dict(self.positions)
        size = 0
        positions = self.positions
        while self._pending and size < max_bytes:
            item = self._pending.popleft()
            at = positions.get(item.partition)
            if at is None or item.offset < at:
                continue
            positions[item.partition] = item.offset + 1
            items.append(item)
            size += len(item.raw)
        return Batch(self.partitions, items=items, start=start) if items else None

    async def _to_ring(self) -> None:
        """Our positions are inside the ring: continue from it (what we read ahead of it is
        there too)."""
        self._cursor = self.hub._cursor_for(self.positions)
        self._aligned = False
        self._pending.clear()
        await self._close_reader()

    async def _fetch(self, timeout: float) -> None:
        if self._reader is None:
            topic = self.hub.topic
            self._reader = self.hub.log.reader(
                {(topic, p): off for p, off in self.positions.items()}, catch_up=True)
            self.hub.readers += 1
        try:
            records = await self._reader.poll(max_records=self.hub.batch, timeout=timeout)
        except FeedError as exc:
            log.warning("realtime catch-up read failed, retrying: %s", exc.detail)
            await self._close_reader()
            await asyncio.sleep(min(1.0, timeout))
            return
        self._pending.extend(to_item(record) for record in records)

    async def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(FeedError):
                await reader.close()

    async def close(self) -> None:
        self.hub.detach(self)
        self._pending.clear()
        await self._close_reader()


class Hub:
    """The one reader of ``topic``, its ring of recent ticks and its subscribers."""

    def __init__(self, event_log: EventLog, topic: str, *, partitions: int = 10,
                 max_lag: int = 10_000, max_bytes: int = BUFFER_BYTES, batch: int = 1000,
                 poll_timeout: float = 1.0, linger: float = LINGER_SECONDS,
                 retry_delay: float = 0.5, max_retry_delay: float = 10.0) -> None:
        self.log = event_log
        self.topic = topic
        self.create_partitions = partitions
        self.max_lag = max(1, max_lag)
        self.max_bytes = max(1, max_bytes)
        self.batch = max(1, batch)
        self.poll_timeout = poll_timeout
        self.linger = linger
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.next: Positions = {}  # the reader's next offset per partition
        self.partition_count = 0
        self.delivered = 0  # records published
        self.cut = 0  # subscribers cut for lag
        self.readers = 0  # log readers opened by subscribers (catch-up older than the ring)
        self._subs: set[Subscription] = set()
        self._waiting: set[Subscription] = set()
        # The ring: ticks ``_base .. _head - 1``; ``_start`` is the positions before the
        # oldest, ``_end`` after the newest.
        self._ticks: dict[int, Tick] = {}
        self._base = 0
        self._head = 0
        self._start: Positions = {}
        self._end: Positions = {}
        self._records = 0
        self._bytes = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reader task (it keeps retrying until the log answers)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"realtime-hub-{self.topic}")

    async def ready(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        if not self._ready.is_set():
            raise Unavailable("the realtime stream is not available yet (event log unreachable)")

    def end_streams(self) -> None:
        """End every subscription with ``shutdown`` (streams send their final position) and
        refuse new ones; the reader keeps running until ``close``."""
        self._draining = True
        for sub in list(self._subs):
            sub._close("shutdown")

    async def close(self) -> None:
        self.end_streams()
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def pause(self) -> float:
        """The reader's wait after a tick: ``linger``, or longer with so many subscribers
        that a tick every ``linger`` would wake more than ``WAKEUPS_PER_SECOND`` of them per
        second (each wake-up is a write), at most ``MAX_LINGER_SECONDS``."""
        spread = len(self._subs) / WAKEUPS_PER_SECOND
        return min(max(self.linger, spread), max(self.linger, MAX_LINGER_SECONDS))

    @property
    def buffered(self) -> tuple[int, int]:
        """Records and bytes the ring holds."""
        return self._records, self._bytes

    # --- subscriptions --------------------------------------------------------------------

    def subscribe(self, positions: Mapping[int, int]) -> Subscription:
        """A subscription starting at ``positions`` (partition -> next offset; a partition
        absent from the hub is ignored; positions beyond the hub are clamped to it)."""
        if self._draining:
            raise Unavailable("the server is shutting down")
        start = {p: max(0, min(off, self.next[p])) for p, off in positions.items()
                 if p in self.next}
        sub = Subscription(self, start)
        if self._covers(start):
            sub._cursor = self._cursor_for(start)
            sub._aligned = sub._cursor == self._head and all(
                off == self.next[p] for p, off in start.items())
        self._subs.add(sub)
        return sub

    def tail(self, partitions: Iterable[int] | None = None) -> Positions:
        chosen = self.next if partitions is None else partitions
        return {p: self.next[p] for p in chosen if p in self.next}

    def detach(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        self._waiting.discard(sub)

    def _covers(self, positions: Mapping[int, int]) -> bool:
        """Every record at or after ``positions`` that the reader read is in the ring."""
        start = self._start
        return all(off >= start.get(p, 0) for p, off in positions.items())

    def _cursor_for(self, positions: Mapping[int, int]) -> int:
        """The first tick with a record at or after ``positions`` (the head when none): the
        ticks' ends only grow, so a binary search."""
        lo, hi = self._base, self._head
        while lo < hi:
            mid = (lo + hi) // 2
            end = self._ticks[mid].end
            if any(end.get(p, 0) > off for p, off in positions.items()):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _cut(self, sub: Subscription) -> None:
        if sub.reason is None:
            sub._close("slow")
            self.cut += 1
        self.detach(sub)

    # --- the reader -------------------------------------------------------------------------

    async def _init(self) -> None:
        await self.log.create_topic(self.topic, self.create_partitions)
        ends = await self.log.end_offsets(self.topic)
        self.next = dict(ends)
        self.partition_count = len(ends)
        self._start = dict(ends)
        self._end = dict(ends)

    async def _run(self) -> None:
        delay = self.retry_delay
        reader: LogReader | None = None
        try:
            while not self._closed:
                try:
                    if not self._ready.is_set():
                        await self._init()
                        self._ready.set()
                    if reader is None:
                        reader = self.log.reader(
                            {(self.topic, p): off for p, off in self.next.items()})
                    records = await reader.poll(max_records=self.batch,
                                                timeout=self.poll_timeout)
                except Exception as exc:  # the one reader must never die
                    detail = exc.detail if isinstance(exc, FeedError) else repr(exc)
                    log.warning("realtime reader failed, reopening in %.1fs: %s", delay, detail)
                    if reader is not None:
                        with contextlib.suppress(FeedError):
                            await reader.close()
                        reader = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_delay)
                    continue
                delay = self.retry_delay
                if records and self._publish(records):
                    # Let subscribers write, and let the next records gather meanwhile.
                    await asyncio.sleep(self.pause)
        finally:
            if reader is not None:
                with contextlib.suppress(FeedError):
                    await reader.close()

    def _publish(self, records: list[LogRecord]) -> bool:
        # Synchronous on purpose: subscribers see the ring change only between ticks.
        nxt = self.next
        items: list[StreamItem] = []
        size = 0
        published = False
        for record in records:
            p = record.partition
            if record.offset < nxt.get(p, 0):
                continue  # a redelivery after a reconnect
            nxt[p] = record.offset + 1
            item = to_item(record)
            items.append(item)
            size += len(item.raw)
            if size >= TICK_BYTES:  # small ticks: what a socket buffers stays small
                self._add_tick(items)
                items, size, published = [], 0, True
        if items:
            self._add_tick(items)
            published = True
        if not published:
            return False
        self._trim()
        cooled = self._ticks.get(self._head - 1 - HOT_TICKS)
        if cooled is not None:  # a laggard with filters decodes again; memory stays bounded
            for item in cooled.items:
                item.forget()
        waiting, self._waiting = self._waiting, set()
        for sub in waiting:
            sub._wake()
        return True

    def _add_tick(self, items: list[StreamItem]) -> None:
        tick = Tick(self, self._head, items, self._end, dict(self.next))
        self._ticks[self._head] = tick
        self._head += 1
        self._end = tick.end
        self._records += len(items)
        self._bytes += tick.size
        self.delivered += len(items)

    def _trim(self) -> None:
        trimmed = False
        while self._head - self._base > 1 and (self._records > self.max_lag
                                               or self._bytes > self.max_bytes):
            old = self._ticks.pop(self._base)
            self._base += 1
            self._records -= len(old.items)
            self._bytes -= old.size
            self._start = old.end
            trimmed = True
        if trimmed:
            for sub in [s for s in self._subs
                        if s._cursor is not None and s._cursor < self._base]:
                self._cut(sub)
