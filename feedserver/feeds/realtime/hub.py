"""Realtime fan-out: ONE reader of the article topic per process, MANY subscribers.

Bounded memory by construction:

* the hub holds one poll batch at a time; each record becomes ONE shared ``StreamItem`` (with
  ``event.partition`` / ``event.offset`` stamped in; see ``items``);
* each live subscriber has a buffer of at most ``queue_size`` items (references to the shared
  items). The hub never waits for a subscriber: when a buffer is full the subscriber FALLS OFF
  the live fan-out (its buffer is dropped) and continues from its own positions with a reader
  of its own, at its own pace (a CPU hiccup or a burst does not disconnect anyone). Once it
  is more than ``max_lag`` records behind the hub it is CUT
  (``SubscriptionClosed("slow", positions)``) and can resume from its positions. Nobody else,
  and not the reader, is ever slowed down.

Positions are per partition "next offset to deliver" (Kafka's convention, inclusive on
resume). A subscriber asking for an older position than the hub's reader first reads the log
itself (catch-up, at its own pace), then joins the live fan-out: it attaches when it is close
to the hub (within half a buffer), records the hub's positions at that instant (``join``),
finishes the last stretch ``[positions, join)`` from its own reader while live items
(all ``>= join``) wait in its buffer, and from then on skips every item below its positions.
Nothing is lost and nothing is delivered twice, per partition.

The reader survives broker outages: a failing poll closes it and it reopens, after a growing
delay, exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Literal

from feedserver.errors import FeedError, Unavailable
from feedserver.feeds.realtime.items import StreamItem, to_item
from feedserver.storage.eventlog import EventLog, LogReader, LogRecord

log = logging.getLogger(__name__)

PARTS = 10  # WME: parts are 0..9 whatever the partition count
CloseReason = Literal["slow", "shutdown"]
Positions = dict[int, int]


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


class Subscription:
    """A subscriber's view: ``await next(timeout)`` gives items in offset order per partition
    (None on timeout, for heartbeats); ``positions`` is where to resume."""

    def __init__(self, hub: Hub, positions: Mapping[int, int], queue_size: int) -> None:
        self.hub = hub
        self.positions: Positions = dict(positions)
        self.partitions = frozenset(self.positions)
        self.limit = max(2, queue_size)
        self.reason: CloseReason | None = None
        self._buffer: deque[StreamItem] = deque()
        self._wake = asyncio.Event()
        self._attached = False
        self._live_ready = False  # catch-up over: serve from the live buffer only
        self._join: Positions | None = None
        self._done: set[int] = set()  # partitions whose catch-up ended at a gap
        self._reader: LogReader | None = None
        self._pending: deque[StreamItem] = deque()

    # --- hub side (synchronous: never awaits) -------------------------------------------

    def _offer(self, item: StreamItem) -> bool:
        """Queue a live item; False when the buffer is full (the hub then cuts us)."""
        if len(self._buffer) >= self.limit:
            return False
        self._buffer.append(item)
        self._wake.set()
        return True

    def _fall_back(self) -> None:
        """Off the live fan-out: read from the log again from our positions."""
        self._attached = False
        self._live_ready = False
        self._join = None
        self._done.clear()
        self._buffer.clear()
        self._wake.set()

    def _close(self, reason: CloseReason) -> None:
        if self.reason is None:
            self.reason = reason
            self._buffer.clear()  # dropped: the resume position still points before them
            self._wake.set()

    # --- subscriber side ----------------------------------------------------------------

    @property
    def behind(self) -> int:
        """Records between our positions and the hub's reader."""
        return sum(max(0, self.hub.next.get(p, 0) - off) for p, off in self.positions.items())

    def _check(self) -> None:
        if self.reason is not None:
            raise SubscriptionClosed(self.reason, dict(self.positions))

    def _take(self, item: StreamItem) -> StreamItem | None:
        """Hand out ``item`` if it is the next of its partition; skip duplicates."""
        if item.offset < self.positions.get(item.partition, item.offset + 1):
            return None
        self.positions[item.partition] = item.offset + 1
        return item

    async def next(self, timeout: float) -> StreamItem | None:
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            if not self._live_ready:
                item = await self._next_catchup(deadline)
                if item is not None or time.monotonic() >= deadline:
                    self._check()
                    return item
                continue
            while self._buffer:
                taken = self._take(self._buffer.popleft())
                if taken is not None:
                    return taken
            self._wake.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _next_catchup(self, deadline: float) -> StreamItem | None:
        while True:
            self._check()
            join = self._join
            while self._pending:
                item = self._pending.popleft()
                if join is not None and item.offset >= join.get(item.partition, 0):
                    self._done.add(item.partition)
                    continue  # the live buffer has it
                taken = self._take(item)
                if taken is not None:
                    return taken
            if not self._attached and self.behind <= self.limit // 2:
                self._join = join = self.hub._attach(self)
            if join is not None and all(self.positions[p] >= join.get(p, 0) or p in self._done
                                        for p in self.positions):
                await self._close_reader()
                self._live_ready = True
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await self._fetch(remaining)

    async def _fetch(self, timeout: float) -> None:
        if self._reader is None:
            topic = self.hub.topic
            self._reader = self.hub.log.reader(
                {(topic, p): off for p, off in self.positions.items()})
        try:
            records = await self._reader.poll(max_records=self.limit, timeout=timeout)
        except FeedError as exc:
            log.warning("realtime catch-up read failed, retrying: %s", exc.detail)
            await self._close_reader()
            await asyncio.sleep(min(1.0, timeout))
            return
        join = self._join
        for record in records:
            if join is not None and record.offset >= join.get(record.partition, 0):
                # Past the join point: the partition's catch-up is over (gaps included).
                self._done.add(record.partition)
                continue
            self._pending.append(to_item(record))

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
    """The one reader of ``topic`` and its subscribers."""

    def __init__(self, event_log: EventLog, topic: str, *, partitions: int = 10,
                 queue_size: int = 1000, max_lag: int = 10_000, batch: int = 500,
                 poll_timeout: float = 1.0,
                 retry_delay: float = 0.5, max_retry_delay: float = 10.0) -> None:
        self.log = event_log
        self.topic = topic
        self.create_partitions = partitions
        self.queue_size = queue_size
        self.max_lag = max(queue_size, max_lag)
        # A poll never brings more than half a buffer: a burst alone cannot cut a subscriber
        # that keeps up.
        self.batch = max(1, min(batch, queue_size // 2))
        self.poll_timeout = poll_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.next: Positions = {}  # the reader's next offset per partition
        self.partition_count = 0
        self.delivered = 0
        self.cut = 0
        self.fell_back = 0
        self._subs: set[Subscription] = set()
        self._live: dict[int, list[Subscription]] = {}
        self._lagging: set[Subscription] = set()  # fell off the live fan-out
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

    # --- subscriptions --------------------------------------------------------------------

    def subscribe(self, positions: Mapping[int, int]) -> Subscription:
        """A subscription starting at ``positions`` (partition -> next offset; a partition
        absent from the hub is ignored; positions beyond the hub are clamped to it)."""
        if self._draining:
            raise Unavailable("the server is shutting down")
        start = {p: max(0, min(off, self.next[p])) for p, off in positions.items()
                 if p in self.next}
        sub = Subscription(self, start, self.queue_size)
        self._subs.add(sub)
        if sub.behind == 0:  # at the tail: live at once, no reader of its own
            sub._join = self._attach(sub)
            sub._live_ready = True
        return sub

    def tail(self, partitions: Iterable[int] | None = None) -> Positions:
        chosen = self.next if partitions is None else partitions
        return {p: self.next[p] for p in chosen if p in self.next}

    def _attach(self, sub: Subscription) -> Positions:
        self._lagging.discard(sub)
        sub._attached = True
        for p in sub.partitions:
            self._live.setdefault(p, []).append(sub)
        return dict(self.next)

    def detach(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        self._lagging.discard(sub)
        self._unlive(sub)

    def _unlive(self, sub: Subscription) -> None:
        for p in sub.partitions:
            subs = self._live.get(p)
            if subs and sub in subs:
                subs.remove(sub)

    # --- the reader -------------------------------------------------------------------------

    async def _init(self) -> None:
        await self.log.create_topic(self.topic, self.create_partitions)
        ends = await self.log.end_offsets(self.topic)
        self.next = dict(ends)
        self.partition_count = len(ends)

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
                self._fan_out(records)
                if records:
                    await asyncio.sleep(0)  # let subscribers drain before the next batch
        finally:
            if reader is not None:
                with contextlib.suppress(FeedError):
                    await reader.close()

    def _fan_out(self, records: list[LogRecord]) -> None:
        # Synchronous on purpose: a subscriber attaching between two batches sees ``next``
        # exactly at a batch boundary, so its join point is exact.
        fallen: list[Subscription] = []
        for record in records:
            p = record.partition
            if record.offset < self.next.get(p, 0):
                continue  # a redelivery after a reconnect
            self.next[p] = record.offset + 1
            subs = self._live.get(p)
            if not subs:
                continue
            item = to_item(record)
            for sub in subs:
                if sub._attached and sub.reason is None and not sub._offer(item):
                    sub._attached = False  # nothing more in this batch
                    fallen.append(sub)
            self.delivered += 1
        for sub in fallen:
            self._unlive(sub)
            sub._fall_back()
            self._lagging.add(sub)
            self.fell_back += 1
        for sub in list(self._lagging):
            if sub.reason is not None:
                self._lagging.discard(sub)
            elif sub.behind > self.max_lag:
                sub._close("slow")
                self.cut += 1
                self.detach(sub)
