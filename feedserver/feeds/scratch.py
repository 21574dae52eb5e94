"""Scratch space of builds (snapshot build and update, diff build): folders under
``data_dir/tmp``, and the SQLite files in them (``scratch_db``).

A build that is killed (``kill -9``, OOM, a node lost) never runs its cleanup, and its scratch
(gigabytes on a real wiki) would stay forever. So every scratch folder is LOCKED while its build
runs: ``tmp/<name>.lock`` is created and ``flock``-ed BEFORE ``tmp/<name>/`` exists, and the
lock lives exactly as long as the build's process (the kernel drops it when the process dies,
however it dies; forked pool workers hold it too while they run).

``sweep(root)`` removes every scratch folder whose lock it can take: those of builds that are no
longer running, and folders left by versions that did not lock at all. A folder whose lock is
held belongs to a running build and is never touched. Every new scratch folder sweeps first, and
the long-running commands (``serve``, ``events consume``) sweep at start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

PREFIXES = ("snapshot-build-", "snapshot-update-", "diff-build-", "parquet-export-")
LOCK_SUFFIX = ".lock"


def scratch_root(data_dir: Path) -> Path:
    return data_dir / "tmp"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path`` (created if missing), or None if another
    process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def sweep(root: Path) -> list[str]:
    """Remove the scratch of builds that are not running; returns the names removed."""
    if not root.is_dir():
        return []
    removed: list[str] = []
    for entry in sorted(root.iterdir()):
        name = entry.name.removesuffix(LOCK_SUFFIX)
        if not name.startswith(PREFIXES) or (entry.name.endswith(LOCK_SUFFIX)
                                             and (root / name).exists()):
            continue  # not ours, or a lock whose folder is handled when the folder comes up
        fd = _try_lock(root / (name + LOCK_SUFFIX))
        if fd is None:
            continue  # a running build holds it
        try:
            if (root / name).exists():
                shutil.rmtree(root / name, ignore_errors=True)
                removed.append(name)
            (root / (name + LOCK_SUFFIX)).unlink(missing_ok=True)
        finally:
            os.close(fd)
    if removed:
        log.info("removed the scratch of %d builds no longer running: %s", len(removed),
                 ", ".join(removed))
    return removed


@contextlib.contextmanager
def scratch_dir(data_dir: Path, prefix: str) -> Iterator[Path]:
    """A new locked scratch folder ``data_dir/tmp/<prefix><unique>``, removed on exit; stale
    scratch of dead builds is swept first."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown scratch prefix {prefix!r}")
    root = scratch_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    sweep(root)
    name = f"{prefix}{uuid.uuid4().hex}"
    fd = _try_lock(root / (name + LOCK_SUFFIX))
    assert fd is not None  # a fresh unique name: nobody else can hold it
    folder = root / name
    try:
        folder.mkdir()
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        (root / (name + LOCK_SUFFIX)).unlink(missing_ok=True)
        os.close(fd)


def scratch_db(path: Path) -> sqlite3.Connection:
    """A SQLite file for one build's intermediate rows (staging, diffs, updates)."""
    conn = sqlite3.connect(path, isolation_level=None)
    # A scratch database: durability buys nothing, a crash discards the whole build anyway.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("PRAGMA cache_size=-32000")
    return conn
