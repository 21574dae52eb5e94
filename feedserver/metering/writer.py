"""The single usage writer: journal first, then one asyncio task draining a queue in batches.

``UsageRecorder`` is the concrete ``UsageSink``. ``record()`` appends the records to the journal
(one ``write``: survives ``kill -9``) and queues them; the writer task takes up to
``ledger_batch_size`` records or whatever arrived within ``ledger_flush_seconds``, fsyncs the
journal, delivers the batch to its ``Destination`` (the ledger, or Kafka in distributed mode) and
only then releases the journal space. A failing destination is retried with backoff; the records
stay in the journal meanwhile, so nothing is lost and (ids being idempotent) nothing doubles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, Unpack

import anyio.to_thread

from feedserver.errors import FeedError
from feedserver.metering.journal import Journal
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import (
    MeteredPrincipal,
    Usage,
    UsageRecord,
    response_records,
)

log = logging.getLogger(__name__)


class Destination(Protocol):
    async def deliver(self, records: Sequence[UsageRecord]) -> None: ...

    async def close(self) -> None: ...


class LedgerDestination:
    """Embedded mode: write straight into the hash-chained ledger (off the event loop)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        await anyio.to_thread.run_sync(self.ledger.append, records)

    async def close(self) -> None:
        return None


_Item = tuple[list[UsageRecord], dict[int, int]]


class UsageRecorder:
    def __init__(
        self,
        journal: Journal,
        destination: Destination,
        *,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self.journal = journal
        self.destination = destination
        self.batch_size = max(1, batch_size)
        self.flush_seconds = flush_seconds
        self.max_backoff = max_backoff
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._open: dict[str, Counter[int]] = {}
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> int:
        """Replay what a previous (crashed) process left in the journal, then start writing.
        Returns the number of records replayed."""
        recovered = await anyio.to_thread.run_sync(self.journal.recover)
        if recovered.records:
            await self.destination.deliver(recovered.records)
        await anyio.to_thread.run_sync(self.journal.discard)
        self.journal.open()
        self._task = asyncio.create_task(self._run(), name="usage-writer")
        if recovered.records:
            log.info("replayed %d usage record(s) from the journal", len(recovered.records))
        return len(recovered.records)

    async def stop(self) -> None:
        """Flush everything queued, then close the journal (deleting it when all is committed)."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None
        await self.destination.close()
        self.journal.close()

    async def flush(self) -> None:
        """Wait until everything recorded so far is delivered (tests, reports, shutdown)."""
        await self._queue.join()

    # --- UsageSink -----------------------------------------------------------------------------
    def record(self, principal: MeteredPrincipal, **usage: Unpack[Usage]) -> None:
        self._append(response_records(principal, **usage), usage["response_id"], final=True)

    def progress(self, principal: MeteredPrincipal, **usage: Unpack[Usage]) -> None:
        self._append(response_records(principal, **usage), usage["response_id"], final=False)

    def _append(self, records: list[UsageRecord], response_id: str, *, final: bool) -> None:
        # Keyed by the server's response id: clients choose request ids, not these.
        refs = self._open.setdefault(response_id, Counter())
        refs[self.journal.append(records)] += len(records)
        if final:  # checkpoints stay journal-only; the final records release their lines too
            del self._open[response_id]
            self._queue.put_nowait((records, dict(refs)))

    # --- the writer task -----------------------------------------------------------------------
    async def _next_batch(self) -> tuple[list[_Item], bool]:
        first = await self._queue.get()
        if first is None:
            return [], True
        items, size = [first], len(first[0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.flush_seconds
        while size < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
            if item is None:
                return items, True
            items.append(item)
            size += len(item[0])
        return items, False

    async def _deliver(self, items: list[_Item]) -> None:
        records = [rec for recs, _ in items for rec in recs]
        backoff = 0.05
        while True:
            try:
                await anyio.to_thread.run_sync(self.journal.sync)
                await self.destination.deliver(records)
                break
            except (FeedError, OSError) as exc:
                log.warning("usage delivery failed (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
        counts: Counter[int] = Counter()
        for _, refs in items:
            counts.update(refs)
        self.journal.release(counts)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            items, stopping = await self._next_batch()
            if items:
                try:
                    await self._deliver(items)
                finally:
                    for _ in items:
                        self._queue.task_done()
            if stopping:
                self._queue.task_done()
                # drain what raced in after the sentinel
                rest: list[_Item] = []
                while not self._queue.empty():
                    item = self._queue.get_nowait()
                    self._queue.task_done()
                    if item is not None:
                        rest.append(item)
                if rest:
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._deliver(rest)
