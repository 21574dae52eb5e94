"""The single usage writer: journal first, then one asyncio task draining a queue in batches.

``UsageRecorder`` is the concrete ``UsageSink``. ``record()`` appends ONE line per response to
the journal (``ResponseUsage``, a copy into a mapped segment: survives ``kill -9``) and queues
it; the writer task takes up to ``ledger_batch_size`` records' worth or whatever arrived within
``ledger_flush_seconds``, syncs the journal in one worker-thread hop and delivers the batch
to its ``Destination``, and only then releases the journal space. A ``LineDestination`` (the
ledger appender process) takes the journal's own lines as they are and derives the records
itself, and syncs the journal's ranges before it appends (no worker-thread hop in this
process); any other destination (the ledger in a worker thread, Kafka in distributed mode) gets
the usage records, expanded from the lines (``expand``: the ids' SHA-1, download ids, times)
in the same worker-thread hop as the sync. A failing destination is retried with backoff;
the lines stay in the journal meanwhile, so nothing is lost and (ids being idempotent)
nothing doubles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, Unpack, runtime_checkable

import anyio.to_thread

from feedserver.errors import FeedError
from feedserver.metering.journal import Journal, Written, decode_lines
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import MeteredPrincipal, Usage, UsageRecord
from feedserver.metering.response_usage import line

log = logging.getLogger(__name__)


class Destination(Protocol):
    async def deliver(self, records: Sequence[UsageRecord]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class LineDestination(Destination, Protocol):
    """A destination that reads the journal's lines itself (``journal.decode_line``, in
    another process): the writer hands it a batch's final lines (``response_usage.line``,
    newline-terminated) as they are, and derives nothing. ``deliver`` still takes records
    (the journal's replay at start, which merges checkpoints)."""

    async def deliver_lines(self, lines: Sequence[bytes], *, sync: Sequence[Written] = ()
                            ) -> None:
        """Append ``lines``, after making the journal's ranges ``sync`` durable
        (``Journal.unsynced``): the journal is durable before its lines are in the ledger,
        as when the writer syncs it."""


class LedgerDestination:
    """Embedded mode: write straight into the hash-chained ledger (off the event loop)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        await anyio.to_thread.run_sync(self.ledger.append, records)

    async def close(self) -> None:
        return None


# A response's final journal line, the journal segment it went to, and the journal lines of
# its checkpoints (``None`` for most responses, which have none).
_Item = tuple[bytes, int, Counter[int] | None]
# Records per response, to turn ``batch_size`` (records) into responses: requests and bytes,
# the most frequent case (a record-exact count would cost the event loop more than it is worth).
_RECORDS_PER_RESPONSE = 2


class UsageRecorder:
    def __init__(
        self,
        journal: Journal,
        destination: Destination,
        *,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
        max_backoff: float = 5.0,
        stop_seconds: float = 15.0,
    ) -> None:
        self.journal = journal
        self.destination = destination
        # Checked once: a destination that reads the lines gets them, no records are made here.
        self._line_destination = destination if isinstance(destination, LineDestination) \
            else None
        self.batch_size = max(1, batch_size)
        self._batch_lines = max(1, self.batch_size // _RECORDS_PER_RESPONSE)
        self.flush_seconds = flush_seconds
        self.max_backoff = max_backoff
        # How long ``stop`` keeps retrying a failing destination; then the undelivered lines
        # stay in the journal (kept on close, replayed at the next start) and the server stops.
        self.stop_seconds = stop_seconds
        self._give_up_at = math.inf
        # Lines waiting for the writer task. Per response: a list append and, at most, an
        # event set; the task wakes once per batch (a timer per batch, not per record).
        self._pending: list[_Item] = []
        self._arrived = asyncio.Event()  # something is pending (set by the first of a batch)
        self._full = asyncio.Event()  # a whole batch is pending (or stopping)
        self._done = asyncio.Condition()  # a batch was delivered (``flush``)
        self._delivered = 0  # responses delivered
        self._taken = 0  # responses taken by the writer task, not yet delivered
        self._stopping = False
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
        """Flush everything recorded, then close the journal (deleting it when all is
        committed). A destination still failing ``stop_seconds`` after the call leaves the
        rest in the journal, kept on close and replayed at the next start: a server whose
        ledger is down still stops."""
        if self._task is not None:
            self._stopping = True
            self._give_up_at = time.monotonic() + self.stop_seconds
            self._arrived.set()
            self._full.set()
            await self._task
            self._task = None
        await self.destination.close()
        self.journal.close()

    async def flush(self) -> None:
        """Wait until everything recorded so far is delivered (tests, reports, shutdown)."""
        target = self._delivered + self._taken + len(self._pending)
        if self._pending:
            self._full.set()  # no reason to wait for the timer
        async with self._done:
            await self._done.wait_for(lambda: self._delivered >= target or self._task is None)

    # --- UsageSink -----------------------------------------------------------------------------
    def record(self, principal: MeteredPrincipal, **usage: Unpack[Usage]) -> None:
        # One line holding what the records derive from, nothing derived: ``expand`` makes
        # the records off the event loop (this runs per response on it).
        response_id = usage["response_id"]
        if not response_id:
            raise ValueError("usage needs the server-assigned response id")
        entry = line(time.time_ns(), principal, usage)
        segment = self.journal.append(entry)
        pending = self._pending
        if not pending:  # the first of a batch wakes the writer task
            self._arrived.set()
        # The final line releases itself and the lines of the response's checkpoints (most
        # responses have none: nothing but a tuple for them). Keyed by the server's response
        # id: clients choose request ids, not these.
        pending.append((entry, segment,
                        self._open.pop(response_id, None) if self._open else None))
        if len(pending) >= self._batch_lines and not self._full.is_set():
            self._full.set()

    def progress(self, principal: MeteredPrincipal, **usage: Unpack[Usage]) -> None:
        # Checkpoints stay journal-only, their lines held until the final record.
        response_id = usage["response_id"]
        if not response_id:
            raise ValueError("usage needs the server-assigned response id")
        segment = self.journal.append(line(time.time_ns(), principal, usage))
        self._open.setdefault(response_id, Counter())[segment] += 1

    # --- the writer task -----------------------------------------------------------------------
    async def _next_batch(self) -> list[_Item]:
        """What is pending once a batch is full or ``flush_seconds`` after the first of it."""
        await self._arrived.wait()
        if not self._full.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_seconds)
        items, self._pending = self._pending, []
        self._taken = len(items)
        self._arrived.clear()
        if not self._stopping:
            self._full.clear()
        return items

    def _synced(self, items: list[_Item]) -> list[UsageRecord]:
        """Sync the journal, then the batch's records (off the event loop, one hop)."""
        self.journal.sync()
        return decode_lines(entry for entry, _, _ in items)

    async def _deliver(self, items: list[_Item]) -> None:
        lines_to = self._line_destination
        lines = [entry for entry, _, _ in items] if lines_to is not None else []
        records: list[UsageRecord] | None = None
        backoff = 0.05
        while True:
            try:
                if lines_to is not None:
                    # The destination (another process) syncs the journal first: no worker
                    # thread here, whose GIL hand-offs cost the event loop more than the
                    # fsync (docs/metering.md, "The journal's fsync in the appender").
                    written = self.journal.unsynced()
                    await lines_to.deliver_lines(lines, sync=written)
                    self.journal.synced(written)
                    break
                if records is None:
                    records = await anyio.to_thread.run_sync(self._synced, items)
                else:
                    await anyio.to_thread.run_sync(self.journal.sync)
                await self.destination.deliver(records)
                break
            except (FeedError, OSError) as exc:
                if time.monotonic() >= self._give_up_at:
                    log.error("usage delivery still failing at shutdown (%s): %d response(s) "
                              "stay in the journal, replayed at the next start", exc,
                              len(items))
                    return  # not released: the journal keeps them
                log.warning("usage delivery failed (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(min(backoff, max(self._give_up_at - time.monotonic(),
                                                     0.0)))
                backoff = min(backoff * 2, self.max_backoff)
        counts: dict[int, int] = {}
        for _, segment, checkpoints in items:
            counts[segment] = counts.get(segment, 0) + 1
            if checkpoints is not None:
                for number, held in checkpoints.items():
                    counts[number] = counts.get(number, 0) + held
        self.journal.release(counts)

    async def _run(self) -> None:
        try:
            while True:
                items = await self._next_batch()
                if items:
                    try:
                        await self._deliver(items)
                    finally:
                        async with self._done:
                            self._delivered += len(items)
                            self._taken = 0
                            self._done.notify_all()
                if self._stopping and not self._pending:
                    return
        finally:
            async with self._done:
                self._done.notify_all()
