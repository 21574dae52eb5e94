"""What one journal append costs the event loop, with and without pages populated ahead.

``python -m bench._journal_append [DIR] [N]`` appends N response lines (~270 bytes, as a
metadata response's) into a real ``Journal`` under DIR (default: a temporary directory, on
the filesystem the server's data would be), one every ~300 µs as the bench's metadata GETs
come, while another thread syncs the journal every 0.2 s as the writer task does (the range
written, ``journal.sync_range``), and the journal's own thread populates ``ahead_bytes`` ahead
of the tail. Arms alternate: ``ahead_bytes`` 0 (no populating) and the default. Each arm
prints the time of ``append`` alone: mean, median, p99, p99.9 and maximum, in microseconds
(docs/metering.md, "Appends without page faults").
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from feedserver.metering.journal import AHEAD_BYTES, Journal

LINE = b'["response",' + b"1" * 255 + b"]\n"  # the size of a metadata response's line
PACE = 300e-6  # seconds between appends
SYNC = 0.2  # seconds between syncs (the writer's ``ledger_flush_seconds``)
ROUNDS = 3


def arm(directory: Path, n: int, ahead_bytes: int) -> list[float]:
    journal = Journal(directory, ahead_bytes=ahead_bytes)
    journal.open()
    stop = threading.Event()

    def syncer() -> None:
        while not stop.wait(SYNC):
            journal.sync()

    thread = threading.Thread(target=syncer, name="sync")
    thread.start()
    clock = time.perf_counter
    took = []
    try:
        for _ in range(n):
            start = clock()
            journal.append(LINE)
            took.append(clock() - start)
            while clock() - start < PACE:  # the rest of a request: the CPU stays busy
                pass
    finally:
        stop.set()
        thread.join()
        journal.close(delete_if_empty=True)
    return took


def summary(took: list[float]) -> str:
    s = sorted(took)
    n = len(s)
    return (f"mean {statistics.fmean(s) * 1e6:5.2f}  median {s[n // 2] * 1e6:5.2f}  "
            f"p99 {s[int(n * 0.99)] * 1e6:6.1f}  p99.9 {s[int(n * 0.999)] * 1e6:7.1f}  "
            f"max {s[-1] * 1e6:7.0f}")


def main(argv: list[str]) -> None:
    base = Path(argv[0]) if argv else None
    n = int(argv[1]) if len(argv) > 1 else 30_000
    results: dict[int, list[float]] = {0: [], AHEAD_BYTES: []}
    for i in range(ROUNDS):
        for ahead in (0, AHEAD_BYTES) if i % 2 == 0 else (AHEAD_BYTES, 0):
            with tempfile.TemporaryDirectory(dir=base, prefix="journal-append-") as tmp:
                results[ahead] += arm(Path(tmp), n, ahead)
    for ahead, took in results.items():
        label = "populated ahead" if ahead else "faulting      "
        print(f"{label}: append, us: {summary(took)}  ({len(took)} appends)")


if __name__ == "__main__":
    main(sys.argv[1:])
