"""The benchmarks' CPU accounting (``bench/_cpu.py``) counts the snapshot build's workers."""

from __future__ import annotations

import resource
import time

from bench._cpu import tree_cpu
from feedserver.feeds.snapshots.build import _pool

BURN = 0.3  # CPU seconds per task: far above the 10 ms tick of /proc
TICK = 0.01


def _burn(seconds: float) -> float:
    """Spin for ``seconds`` of this process's CPU time; returns the CPU time spun."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return time.process_time() - start


def _children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_tree_cpu_counts_the_build_pool_workers() -> None:
    before, reaped = tree_cpu(), _children()
    pool = _pool(2)
    try:
        burned = sum(pool.map(_burn, [BURN] * 4))
    finally:
        pool.shutdown(wait=True)  # workers joined: a quiet point, as after a build
    used = tree_cpu() - before
    # Every second the workers spun is seen (less one clock tick per process at most).
    assert used >= burned - 4 * TICK
    # WHY the bench needs /proc: the workers are the fork server's children, not ours, so
    # the children this process waited for (what the bench counted before) miss them.
    assert _children() - reaped < burned / 2
