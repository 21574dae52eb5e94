"""Run every benchmark module in this folder, in name order.

A benchmark is a module ``bench/<name>.py`` defining ``run()`` (or ``main()``); it prints its
own results, measuring its baselines in the same run so that ratios, not absolute numbers,
are compared across machines. ``python -m bench NAME ...`` runs only the named modules;
``--busy`` runs them while another process keeps one core busy (``bench/_targets.py``). The
serving targets each module checks are printed again at the end, met or not met.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path

from bench import _targets


def discover() -> list[tuple[str, Callable[[], object]]]:
    found = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        entry = getattr(module, "run", None) or getattr(module, "main", None)
        if callable(entry):
            found.append((info.name, entry))
    return found


def main(argv: list[str]) -> int:
    busy = "--busy" in argv
    wanted = {a for a in argv if a != "--busy"}
    if busy:
        os.environ[_targets.BUSY_ENV] = "1"
    with _targets.busy_core() if busy else contextlib.nullcontext():
        for name, entry in discover():
            if wanted and name not in wanted:
                continue
            print(f"== bench.{name}" + (" (one core busy)" if busy else ""), flush=True)
            entry()
    report = _targets.summary()
    if report:
        print(report, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
