"""`feedserver events consume --members N --member I|auto` in-process on the embedded log."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from feedserver.cli import main
from feedserver.cli.events import _membership, _seals
from feedserver.config import Settings, load_settings
from feedserver.feeds.events.membership import Membership
from feedserver.storage.db import connect
from feedserver.storage.eventlog import EmbeddedEventLog
from tests.unit.feeds.events.test_consumer_members import INPUT, load


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("FEEDSERVER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FEEDSERVER_EVENT_TOPICS", INPUT)
    (tmp_path / "var").mkdir()
    return load_settings(data_dir=str(tmp_path / "var"))


async def _committed(settings: Settings) -> tuple[dict[int, int], dict[int, int]]:
    db = connect(settings.database)
    log = EmbeddedEventLog(db)
    try:
        return (await log.committed(settings.consumer_group, INPUT),
                await log.end_offsets(INPUT))
    finally:
        db.close()


async def _load(settings: Settings) -> None:
    db = connect(settings.database)
    try:
        await load(EmbeddedEventLog(db))
    finally:
        db.close()


async def test_member_auto_from_hostname(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    await _load(settings)
    monkeypatch.setattr(socket, "gethostname", lambda: "feedserver-events-consumer-1")
    # The command runs its own event loop, as a separate program would: in a worker thread.
    argv = ["events", "consume", "--once", "--members", "2", "--member", "auto"]
    assert await asyncio.to_thread(main, argv) == 0
    assert "consumed" in capsys.readouterr().out
    committed, ends = await _committed(settings)
    assert committed == {1: ends[1], 3: ends[3]}  # member 1 of 2: odd partitions only
    argv = ["events", "consume", "--once", "--members", "2", "--member", "0"]
    assert await asyncio.to_thread(main, argv) == 0
    committed, ends = await _committed(settings)
    assert committed == ends


@pytest.mark.parametrize("argv", [
    ["--members", "2", "--member", "2"],
    ["--members", "0"],
    ["--members", "two"],
    ["--member", "x"],
    ["--member", "-1"],
    ["--members", "2", "--member", "auto"],  # the test host name has no -<ordinal>
])
def test_bad_membership(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
    assert main(["events", "consume", "--once", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("feedserver: error: ") and err.count("\n") == 1
    assert not (Path(settings.data_dir) / "feedserver.db").exists()  # nothing was started


def test_only_member_zero_seals_batches() -> None:
    def seals(members: str = "1", member: str = "0", *, bounded: bool = False,
              no_seal_batches: bool = False) -> bool:
        return _seals(bounded=bounded, no_seal_batches=no_seal_batches,
                      member=_membership(members, member))

    assert seals()
    assert seals("2", "0")
    assert not seals("2", "1")
    assert not seals(bounded=True) and not seals(no_seal_batches=True)
    assert _membership("1", "0") == Membership(0, 1)
