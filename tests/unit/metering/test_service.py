from __future__ import annotations

from pathlib import Path

import pytest

from feedserver.cli import main
from feedserver.config import load_settings
from feedserver.metering.hostbuckets import HostRateLimiter
from feedserver.metering.ratelimit import DatabaseRateLimiter, LeasedRateLimiter
from feedserver.metering.records import NullSink
from feedserver.metering.service import open_metering
from feedserver.metering.usage_topic import EventLogDestination
from feedserver.metering.writer import LedgerDestination, UsageRecorder
from feedserver.storage.db import Database
from feedserver.storage.eventlog import EmbeddedEventLog
from tests.unit.metering.conftest import FakePrincipal


def test_settings_choose_the_destination_and_limiter(db: Database, tmp_path: Path) -> None:
    events = EmbeddedEventLog(db)
    embedded = open_metering(load_settings({}, data_dir=str(tmp_path)), db, events)
    assert isinstance(embedded.recorder, UsageRecorder)
    assert isinstance(embedded.recorder.destination, LedgerDestination)
    # Shared on every backend: several processes may serve one SQLite file (issue 11 item 6),
    # through a file next to it; PostgreSQL (several hosts) through its rows; both leased.
    limiter = embedded.admitter.limiter
    assert isinstance(limiter, LeasedRateLimiter)
    if db.dialect == "sqlite":
        assert isinstance(limiter.source, HostRateLimiter)
        assert not limiter.blocking  # a file lock: taken on the event loop
    else:
        assert isinstance(limiter.source, DatabaseRateLimiter)
        assert limiter.blocking
    distributed = open_metering(load_settings(
        {}, data_dir=str(tmp_path), mode="distributed", kafka_bootstrap_servers="127.0.0.1:1"),
        db, events)
    assert distributed.recorder is not None
    destination = distributed.recorder.destination
    assert isinstance(destination, EventLogDestination) and destination.events is events


async def test_disabled_metering_admits_everything_and_records_nothing(
        db: Database, tmp_path: Path) -> None:
    off = open_metering(load_settings({}, data_dir=str(tmp_path), metering_enabled=False), db,
                        EmbeddedEventLog(db))
    assert isinstance(off.sink, NullSink) and off.recorder is None
    await off.start()
    assert (await off.admit(FakePrincipal(), "ondemand")).headers == {}
    off.sink.record(FakePrincipal(), feed="ondemand", project=None, response_id="r")
    await off.flush()
    await off.stop()
    assert off.ledger.count() == 0
    assert not (tmp_path / "usage-journal").exists()


def test_consume_needs_kafka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path))
    assert main(["usage", "consume"]) == 1
    assert "FEEDSERVER_KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err
