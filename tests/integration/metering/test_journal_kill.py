"""The usage journal across a real ``kill -9``: a process that appended and died loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feedserver.metering.journal import Journal
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_kill_9_after_append_loses_nothing(tmp_path: Path) -> None:
    script = (
        "import os, signal\n"
        "from feedserver.metering.journal import Journal\n"
        "from tests.unit.metering.conftest import rec\n"
        f"j = Journal({str(tmp_path)!r}); j.open()\n"
        "for i in range(100): j.append([rec(i, quantity=i)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9
    recovered = Journal(tmp_path).recover()
    assert sum(r.quantity for r in recovered.records) == sum(range(100))
    assert len(recovered.records) == 100
