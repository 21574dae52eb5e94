"""The performance issues' targets the benchmarks check, and how each run says met or not.

A benchmark measures a ratio against a baseline taken in the same run and calls ``check``;
``python -m bench`` prints every check of the run again at the end, so ``make bench`` ends
with the targets of the issues as met or not met. ``--busy`` (``BENCH_BUSY=1``) runs the
benchmarks while another process keeps one core busy (``busy_core``): the serving path must
hold its targets on a loaded machine too, not only on a quiet one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

BUSY_ENV = "BENCH_BUSY"


class Check(msgspec.Struct, frozen=True):
    name: str
    value: float
    target: float
    higher_is_better: bool
    unit: str  # "x" (a ratio), "%" (an overhead) or "ok" (1.0 = yes, 0.0 = no)
    mode: str  # "quiet" or "one core busy", plus the database when not SQLite

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        if self.unit == "ok":
            return f"[{'met' if self.met else 'NOT MET'}] {self.name} ({self.mode})"
        shown = (f"{self.value:.2f}x" if self.unit == "x" else f"{self.value:+.1f}%")
        goal = f"{self.target:g}x" if self.unit == "x" else f"{self.target:g}%"
        return (f"[{'met' if self.met else 'NOT MET'}] {self.name} ({self.mode}): {shown} "
                f"(target {op} {goal})")


CHECKS: list[Check] = []


def busy() -> bool:
    return os.environ.get(BUSY_ENV, "") not in {"", "0"}


def mode(database: str = "sqlite") -> str:
    base = "one core busy" if busy() else "quiet"
    return base if database == "sqlite" else f"{base}, {database}"


def check(name: str, value: float, target: float, *, higher_is_better: bool = True,
          unit: str = "x", database: str = "sqlite") -> Check:
    """Record and print one target check."""
    c = Check(name, value, target, higher_is_better, unit, mode(database))
    CHECKS.append(c)
    print(c.line(), flush=True)
    return c


def summary() -> str:
    if not CHECKS:
        return ""
    lines = ["== targets"] + [c.line() for c in CHECKS]
    met = sum(c.met for c in CHECKS)
    lines.append(f"{met} of {len(CHECKS)} targets met")
    return "\n".join(lines)


@contextmanager
def busy_core() -> Iterator[None]:
    """Another process spinning on one core for the duration (a loaded 2-core machine)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait(timeout=10)
