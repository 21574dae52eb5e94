"""`make run` exactly as README.md says, on a fresh clone of this repository with ../shared
beside it, on the machine's own python3: the install from nothing, the demo, every printed
request; then `make run` again in the same clone, as a user does the next day.

The clone is of the working tree as it is, new files included (a commit object written through
a temporary index, leaving the real index and branch alone), so the test checks what is about
to be committed; in CI that is the commit itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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


def test_make_run_on_a_fresh_clone_twice(tmp_path: Path) -> None:
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
                     env=user_env(FEEDSERVER_PORT=str(port))) as running:
            wait_ready(base, running)
            keys.append(check_printed_examples(running.output, base, clone))
    assert keys[0] == keys[1]
    assert (clone / ".venv" / "bin" / "feedserver").exists()
