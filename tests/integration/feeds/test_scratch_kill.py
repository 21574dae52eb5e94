"""Killed builds leave no scratch behind, and a running build's scratch is never touched.

Real ``feedserver snapshot build`` subprocesses on a real dump: five are SIGKILLed while their
scratch folder exists (a kill runs no cleanup at all), one is frozen with SIGSTOP while it
builds (it still runs, as far as the kernel is concerned: its lock is held). Every later build
(and the start of ``serve`` / ``events consume``) must remove the dead builds' scratch and leave
the frozen one's alone; the frozen build, resumed, must then finish and publish normally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from feedserver.feeds.scratch import scratch_root, sweep
from tests.conftest import DUMPS

VOYAGE = DUMPS / "operations-dumps-mwbzutils/sample-pages-articles.xml.bz2"


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    env["FEEDSERVER_DATA_DIR"] = str(data_dir)
    return env


def _build_cmd() -> list[str]:
    return [sys.executable, "-m", "feedserver", "snapshot", "build", "--dump", str(VOYAGE),
            "--no-progress", "--chunk-size", "100000"]


def _scratch(data_dir: Path) -> set[str]:
    root = scratch_root(data_dir)
    return {p.name for p in root.glob("snapshot-build-*") if p.is_dir()} if root.exists() \
        else set()


def _frozen_mid_build(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A build stopped (SIGSTOP) while its scratch folder exists; retried if it was too quick."""
    for _ in range(5):
        before = _scratch(data_dir)
        proc = subprocess.Popen(_build_cmd(), env=_env(data_dir), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            new = _scratch(data_dir) - before
            # Wait until the build wrote something: the folder is really in use.
            if new and any((scratch_root(data_dir) / n / "index.sqlite").exists() for n in new):
                proc.send_signal(signal.SIGSTOP)
                still = _scratch(data_dir) - before
                if still:
                    return proc, still.pop()
                proc.send_signal(signal.SIGCONT)
                break
            time.sleep(0.01)
        proc.kill()
        proc.wait(timeout=30)
    raise AssertionError("could not catch a build mid-way")


def _killed_mid_build(data_dir: Path) -> str:
    proc, name = _frozen_mid_build(data_dir)
    proc.kill()  # SIGKILL: no cleanup code runs
    proc.wait(timeout=30)
    assert name in _scratch(data_dir)  # left behind, as by any killed process
    return name


def test_killed_builds_scratch_is_removed_running_one_is_kept(tmp_path: Path,
                                                              shared_data: Path) -> None:
    data_dir = tmp_path / "var"
    first = _killed_mid_build(data_dir)
    frozen, running = _frozen_mid_build(data_dir)
    try:
        # The frozen build's start swept the killed one's scratch.
        assert _scratch(data_dir) == {running}
        # Each new build sweeps the dead ones before it, never the running one.
        for _ in range(3):
            dead = _killed_mid_build(data_dir)
            assert _scratch(data_dir) == {running, dead}
        # What `serve` and `events consume` do at start: the same sweep.
        assert sweep(scratch_root(data_dir)) == [dead]
        dead = _killed_mid_build(data_dir)
        # A folder left by a version that did not lock its scratch is swept too.
        legacy = scratch_root(data_dir) / "snapshot-build-legacy"
        legacy.mkdir()
        (legacy / "index.sqlite").write_bytes(b"x" * 1000)
        built = subprocess.run(_build_cmd(), env=_env(data_dir), capture_output=True,
                               text=True, timeout=300, check=False)
        assert built.returncode == 0, built.stderr
        # Every dead build's scratch is gone; the running (frozen) build's is untouched.
        assert _scratch(data_dir) == {running}
        assert first != running and dead != running
        assert (scratch_root(data_dir) / running / "index.sqlite").exists()
    finally:
        frozen.send_signal(signal.SIGCONT)
    out, err = frozen.communicate(timeout=300)
    assert frozen.returncode == 0, err
    assert b"elwikivoyage_namespace_0 version" in out
    assert _scratch(data_dir) == set()
    assert not list(scratch_root(data_dir).glob("*.lock"))  # locks go with their folders
