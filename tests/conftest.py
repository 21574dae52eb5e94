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


# Packages whose modules share one session-scoped server that is slow to build: under
# `pytest -n --dist loadscope` each goes to one worker whole, so the server is built once
# instead of once on each worker that drew one of its modules (the WME SDK suite's: ~25 s of
# CLI builds).
ONE_WORKER_PACKAGES = ("tests/integration/wme_sdk/",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """loadscope, with each of ``ONE_WORKER_PACKAGES`` as one scope (pytest-xdist's hook)."""
    if config.getoption("dist") != "loadscope":
        return None  # xdist's own choice
    from xdist.scheduler import LoadScopeScheduling

    class PackageScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for package in ONE_WORKER_PACKAGES:
                if nodeid.startswith(package):
                    return package
            return str(super()._split_scope(nodeid))

    return PackageScopes(config, log)
