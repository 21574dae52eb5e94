"""Shared test configuration: where the real data lives, and the server fixtures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DUMPS = SHARED / "data" / "dumps"
EVENTS = SHARED / "data" / "events"

pytest_plugins = [
    "tests.fixtures.moto",
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DUMPS.is_dir():
        pytest.fail(f"real test data missing: {DUMPS} (CI checks out shared/ beside the repo)")
    return SHARED / "data"
