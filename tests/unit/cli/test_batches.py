"""`feedserver batches build|list` in-process on an embedded event log, and the consumer's
sealing loop (no cron in the embedded setup)."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from feedserver.cli import main
from feedserver.config import Settings, load_settings
from feedserver.feeds.batches import hours
from feedserver.feeds.batches.build import seal_periodically
from feedserver.feeds.batches.store import built_hours, read_hour
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import connect
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing, now_ms
from tests.unit.api.conftest import make_articles


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("FEEDSERVER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path / "var"))
    (tmp_path / "var").mkdir()
    return load_settings(env={}, data_dir=str(tmp_path / "var"))


async def _fill(settings: Settings) -> datetime:
    """Articles stamped two hours ago; returns that hour."""
    hour = hours.hour_of(now_ms()) - timedelta(hours=2)
    db = connect(settings.database)
    log = EmbeddedEventLog(db)
    try:
        await log.create_topic(settings.article_topic, 2)
        await log.append(settings.article_topic, [
            Outgoing(key=f"enwiki/0/{a.identifier}".encode(), value=msgspec.json.encode(a),
                     timestamp_ms=hours.start_ms(hour) + a.identifier)
            for a in make_articles("enwiki", "en", 0, 5)])
    finally:
        db.close()
    return hour


async def test_build_and_list(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batches", "list"]) == 0
    assert "no batches built" in capsys.readouterr().out
    # ``batches build`` runs its own event loop, as a separate program would: in a thread.
    assert await asyncio.to_thread(main, ["batches", "build"]) == 0  # no article topic yet
    assert "no complete hour" in capsys.readouterr().out
    hour = await _fill(settings)
    assert await asyncio.to_thread(main, ["batches", "build", "--grace-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{hours.label(hour)}  enwiki_namespace_0  5 articles" in out
    blobs = FilesystemBlobStore(settings.blob_root)
    assert built_hours(blobs)[0] == hour and len(built_hours(blobs)) >= 2
    argv = ["batches", "build", "--hour", hours.label(hour)]
    assert await asyncio.to_thread(main, argv) == 0  # explicit rebuild
    assert "5 articles" in capsys.readouterr().out
    assert main(["batches", "list", "--json"]) == 0
    first = msgspec.json.decode(capsys.readouterr().out.splitlines()[0])
    assert first["batches"][0]["article_count"] == 5


@pytest.mark.parametrize("arg", ["2026-13-01T00", "yesterday", "2026-01-01T24"])
def test_bad_hour(settings: Settings, arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batches", "build", "--hour", arg]) == 1
    err = capsys.readouterr().err
    assert err.startswith("feedserver: error:") and err.count("\n") == 1


async def test_current_hour_refused(settings: Settings,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    await _fill(settings)
    argv = ["batches", "build", "--hour", hours.label(hours.hour_of(now_ms()))]
    assert await asyncio.to_thread(main, argv) == 1
    assert "not over yet" in capsys.readouterr().err
    assert list(FilesystemBlobStore(settings.blob_root).list("batches/")) == []


async def test_consumer_sealer_builds_without_cron(settings: Settings) -> None:
    hour = await _fill(settings)
    db = connect(settings.database)
    log = EmbeddedEventLog(db)
    blobs = FilesystemBlobStore(settings.blob_root)
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(seal_periodically(log, blobs, settings, stop, interval=0.05))
        for _ in range(200):  # bounded: up to ~10 s
            if hour in built_hours(blobs):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        db.close()
    assert read_hour(blobs, hour).batches[0].article_count == 5
