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
        "from tests.unit.metering.conftest import response_line\n"
        f"j = Journal({str(tmp_path)!r}); j.open()\n"
        "for i in range(100): j.append(response_line(i, bytes_sent=i))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9
    recovered = Journal(tmp_path).recover()
    # every response's line: its request and its bytes (0 bytes: no bytes record)
    assert sum(r.quantity for r in recovered.records if r.meter == "bytes") == sum(range(100))
    assert sum(r.meter == "requests" for r in recovered.records) == 100
    assert len(recovered.records) == 199
