"""`make run` exactly as README.md says, on a fresh clone of this repository with ../shared
beside it: the install from nothing, the demo, every printed request; then `make run` again in
the same clone, as a user does the next day. Once on the machine's own python3, and once where
`python3` is the newest Python the machine has (a user whose system Python is newer types the
same command).

The clone is of the working tree as it is, new files included (a commit object written through
a temporary index, leaving the real index and branch alone), so the test checks what is about
to be committed; in CI that is the commit itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED, free_port
from tests.e2e.readme import started, user_env, wait_ready
from tests.e2e.test_demo import check_printed_examples


def _git(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True, timeout=120, env=env).stdout.strip()


def _working_tree_commit(scratch: Path) -> str:
    env = {**os.environ, "GIT_INDEX_FILE": str(scratch / "index")}
    _git("read-tree", "HEAD", env=env)
    _git("add", "-A", env=env)
    tree = _git("write-tree", env=env)
    return _git("commit-tree", tree, "-p", "HEAD", "-m", "working tree under test", env=env)


def _version(python: str, path: str | None = None) -> str:
    """``python``'s (major, minor), found on ``path`` (else ours)."""
    return subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True, check=True, timeout=60,
                          env={**os.environ, "PATH": path or os.environ["PATH"]}).stdout


def _newer_python() -> str | None:
    """The newest Python (``scripts/newest-python.sh``, as `make test-newest` finds it) when it
    is another version than python3, else None."""
    newest = subprocess.run(["bash", str(ROOT / "scripts" / "newest-python.sh")],
                            capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    return newest if newest and _version(newest) != _version("python3") else None


@pytest.mark.parametrize("python3", ["system", "newest"])
def test_make_run_on_a_fresh_clone_twice(tmp_path: Path, python3: str) -> None:
    path = os.environ["PATH"]
    if python3 == "newest":
        newest = _newer_python()
        if newest is None:
            pytest.skip("no Python newer than python3 on this machine (make test-newest skips too)")
        shims = tmp_path / "bin"
        shims.mkdir()
        (shims / "python3").symlink_to(newest)
        path = f"{shims}:{path}"
    want = _version("python3", path)
    commit = _working_tree_commit(tmp_path)
    clone = tmp_path / "main"
    _git("clone", "-q", "--no-checkout", str(ROOT), str(clone), cwd=tmp_path)
    _git("checkout", "-q", commit, cwd=clone)
    (tmp_path / "shared").symlink_to(SHARED)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keys = []
    for _day in (1, 2):
        with started(["make", "run"], cwd=clone,
                     env=user_env(FEEDSERVER_PORT=str(port), PATH=path)) as running:
            wait_ready(base, running)
            keys.append(check_printed_examples(running.output, base, clone))
    assert keys[0] == keys[1]
    assert (clone / ".venv" / "bin" / "feedserver").exists()
    assert _version(str(clone / ".venv" / "bin" / "python")) == want  # the user's python3
