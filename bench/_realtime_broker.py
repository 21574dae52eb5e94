"""A Tansu broker for the benchmarks: the same process manager as the test fixtures
(``tests/fixtures/tansu.py``), in-memory storage. ``start_tansu()`` returns None when the broker
binary is not installed."""

from __future__ import annotations

from tests.fixtures.tansu import TansuBroker, free_port, tansu_binary

__all__ = ["TansuBroker", "free_port", "start_tansu"]


def start_tansu() -> TansuBroker | None:
    binary = tansu_binary()
    if binary is None:
        return None
    broker = TansuBroker("memory://tansu/", binary=binary)
    broker.start()
    return broker
