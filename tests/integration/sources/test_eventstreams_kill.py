"""Must-show: the EventStreams follower in its own process, ``kill -9`` mid-stream several times
while the server also drops connections every few hundred events, restarted each time: the input
topic holds every real event exactly once, in stream order.

The kill can land anywhere: inside an append, between an append and the position write, or
while reconnecting. Small batches make the gap between the two writes frequent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feedserver.errors import StorageError
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import EVENTS, ROOT
from tests.fixtures.eventstreams import (
    PAGE_CHANGE,
    RECENTCHANGE,
    distinct,
    real_frames,
    serve_eventstreams,
)

pytestmark = pytest.mark.integration

TOPIC = "feedserver.eventstreams"
WAIT = 120.0


def stored(db_path: Path) -> list[str]:
    if not db_path.exists():
        return []
    db = SQLiteDatabase(db_path)
    try:
        rows = db.fetchall("SELECT value FROM eventlog_records WHERE topic = ? ORDER BY pos",
                           (TOPIC,))
    except StorageError:  # tables not created yet by the first process
        return []
    finally:
        db.close()
    return [bytes(r[0]).decode() for r in rows]


def start(url: str, db_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.follow_proc", "--url", url, "--db",
         str(db_path), "--topic", TOPIC, "--stream", RECENTCHANGE, "--stream", PAGE_CHANGE],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(db_path: Path, count: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        have = len(stored(db_path))
        if have >= count:
            return have
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"follower exited with {proc.returncode}: {err[-2000:]}")
        time.sleep(0.02)
    pytest.fail(f"follower did not store {count} events within {WAIT}s")


def test_kill_9_mid_stream_then_restart_stores_each_event_once(tmp_path: Path) -> None:
    frames = real_frames(EVENTS, 3000)
    want = distinct(frames)
    db_path = tmp_path / "follow.db"
    kills: list[int] = []
    with serve_eventstreams(frames, drop_every=250, retry_ms=0, idle_close=30.0) as server:
        for threshold in range(150, len(want) - 100, len(want) // 6):
            proc = start(server.url, db_path)
            try:
                wait_for(db_path, threshold, proc)
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            kills.append(len(stored(db_path)))
        proc = start(server.url, db_path)
        try:
            wait_for(db_path, len(want), proc)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    got = stored(db_path)
    # Killed mid-stream each time (not after the end), and still exactly once, in order.
    assert all(k < len(want) for k in kills)
    assert len(got) == len(set(got)) == len(want)
    assert got == want
    # Every restart resumed from a stored position rather than from the start.
    assert sum(1 for r in server.requests if r.last_event_id is None) == 1
