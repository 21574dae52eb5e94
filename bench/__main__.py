"""Run every benchmark module in this folder, in name order.

A benchmark is a module ``bench/<name>.py`` defining ``run()`` (or ``main()``); it prints its
own results, measuring its baselines in the same run so that ratios, not absolute numbers,
are compared across machines. ``python -m bench NAME ...`` runs only the named modules.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path


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
    wanted = set(argv)
    for name, entry in discover():
        if wanted and name not in wanted:
            continue
        print(f"== bench.{name}", flush=True)
        entry()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
