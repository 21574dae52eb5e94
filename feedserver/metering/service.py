"""``Metering``: what the app factory opens in its lifespan and hands to the handlers.

* ``await metering.admit(principal, feed, project, resource=..., download=...)`` before serving
  (rate limit + quotas; returns ``Admission.headers``, raises ``RateLimited``/``QuotaExceeded``);
* ``metering.sink`` (a ``UsageSink``) after serving, with the bytes actually delivered;
* ``await metering.start()`` / ``await metering.stop()`` in the lifespan.

Choices derived from ``Settings``: usage goes to the usage topic of the event log when
``mode = "distributed"`` and the event log is Kafka, else straight to the ledger, appended in
a child process (``ledger_process.py``) or, with ``ledger_appender = "thread"``, in a worker
thread of this process; the rate limiter is shared by every process that shares the database,
so every process (``serve --workers N``, replicas) draws from ONE bucket per customer
(``open_limiter``: a memory-mapped file next to a SQLite database, leases of a database row on
PostgreSQL).
``metering_enabled = false`` turns admission and recording into no-ops.
"""

from __future__ import annotations

import anyio.to_thread

from feedserver.config import Settings
from feedserver.metering.admission import Admission, Admitter
from feedserver.metering.customers import CustomerDirectory, customer_directory
from feedserver.metering.hostbuckets import HostRateLimiter
from feedserver.metering.journal import Journal
from feedserver.metering.ledger import NEVER_CLOSES, Ledger
from feedserver.metering.ledger_child import ledger_periods
from feedserver.metering.ledger_process import LedgerProcess, child_database
from feedserver.metering.periods import Periods
from feedserver.metering.quotas import QuotaCounters
from feedserver.metering.ratelimit import (
    DatabaseRateLimiter,
    LeasedRateLimiter,
    LocalRateLimiter,
    RateLimiter,
)
from feedserver.metering.records import MeteredPrincipal, NullSink, UsageSink
from feedserver.metering.usage_topic import EventLogDestination
from feedserver.metering.writer import Destination, LedgerDestination, UsageRecorder
from feedserver.plans import Feed
from feedserver.storage.db import Database, SQLiteDatabase
from feedserver.storage.eventlog import EventLog

JOURNAL_DIR = "usage-journal"


class Metering:
    def __init__(
        self,
        db: Database,
        *,
        enabled: bool = True,
        journal_dir: str | None = None,
        destination: Destination | None = None,
        appender: LedgerProcess | None = None,
        limiter: RateLimiter | None = None,
        directory: CustomerDirectory | None = None,
        periods: Periods = NEVER_CLOSES,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
    ) -> None:
        self.db = db
        self.enabled = enabled
        self.ledger = Ledger(db, periods=periods)
        self.counters = QuotaCounters(db)
        self._directory = directory
        self._host_limiter: HostRateLimiter | None = None
        if limiter is None:
            # Never per process: uvicorn workers on one SQLite file are several processes too.
            limiter = open_limiter(db)
            if isinstance(limiter, LeasedRateLimiter) \
                    and isinstance(limiter.source, HostRateLimiter):
                self._host_limiter = limiter.source
        self.admitter = Admitter(self.counters, limiter)
        self.recorder: UsageRecorder | None = None
        # The ledger appender process, started with metering (``ledger_appender``).
        self._appender = appender if enabled and destination is None else None
        if enabled:
            if journal_dir is None:
                raise ValueError("metering needs a journal directory")
            self.recorder = UsageRecorder(
                Journal(journal_dir),
                destination or self._appender or LedgerDestination(self.ledger),
                batch_size=batch_size, flush_seconds=flush_seconds,
            )
        self.sink: UsageSink = self.recorder or NullSink()

    @property
    def directory(self) -> CustomerDirectory:
        """Plans by customer id, for reports (admission reads the principal's plan instead);
        read afresh each time unless one was injected, so new customers and plan changes show."""
        return self._directory or customer_directory(self.db)

    async def start(self) -> None:
        if self.recorder is not None:
            if self._appender is not None:
                await self._appender.start()  # its start-up before the first request
            await self.recorder.start()

    async def stop(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.admitter.release)  # lookup units not spent
            if self.recorder is not None:
                await self.recorder.stop()
        finally:
            if self._host_limiter is not None:
                self._host_limiter.close()

    async def flush(self) -> None:
        if self.recorder is not None:
            await self.recorder.flush()

    async def admit(
        self,
        principal: MeteredPrincipal,
        feed: Feed,
        project: str | None = None,
        *,
        resource: str | None = None,
        download: bool = False,
    ) -> Admission:
        if not self.enabled:
            return Admission()
        return await self.admitter.admit(
            principal, feed, project, resource=resource, download=download
        )


def open_limiter(db: Database) -> RateLimiter:
    """One bucket per customer for every process sharing ``db``: SQLite is one host, so a
    memory-mapped file next to it (``<file>-ratelimit``); PostgreSQL serves many hosts, so its
    ``rate_limit_state`` rows; both spent in short leases (``LeasedRateLimiter``); an
    in-memory SQLite database has one process."""
    if isinstance(db, SQLiteDatabase):
        if db.path == ":memory:":
            return LocalRateLimiter()
        return LeasedRateLimiter(HostRateLimiter(db.path + "-ratelimit"), blocking=False)
    return LeasedRateLimiter(DatabaseRateLimiter(db))


def open_metering(
    settings: Settings,
    db: Database,
    events: EventLog,
    *,
    destination: Destination | None = None,
) -> Metering:
    """The app's metering. In distributed mode with Kafka the usage records go to the usage
    topic of ``events`` (``usage consume`` writes them into the ledger), else straight into
    the ledger; ``events`` stays the caller's to close."""
    if destination is None and settings.mode == "distributed" \
            and settings.events_backend == "kafka":
        destination = EventLogDestination(events, settings.usage_topic)
    appender = None
    if destination is None and settings.ledger_appender == "process":
        # A child can open the database only by its URL: not an in-memory one, nor a
        # database object handed in that is not the one ``settings`` name.
        url = child_database(settings, db)
        appender = LedgerProcess(settings, url) if url is not None else None
    return Metering(
        db,
        enabled=settings.metering_enabled,
        journal_dir=str(settings.data_path / JOURNAL_DIR),
        destination=destination,
        appender=appender,
        periods=ledger_periods(settings),
        batch_size=settings.ledger_batch_size,
        flush_seconds=settings.ledger_flush_seconds,
    )
