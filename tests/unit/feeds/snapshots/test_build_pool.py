"""The build's worker pool starts safely from a process that already runs threads."""

from __future__ import annotations

import os
import threading
import warnings

from feedserver.feeds.snapshots.build import _pool


def test_pool_starts_without_forking_a_threaded_process() -> None:
    # The server and the CLI have threads (journal writer, executors) when a build starts;
    # forking such a process can deadlock the child, and Python 3.12+ warns about it
    # (DeprecationWarning). The pool's fork server is started with fork+exec, never fork().
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(30,), daemon=True)
    thread.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pool = _pool(2)
            try:
                pids = {pool.submit(os.getpid).result(timeout=60) for _ in range(2)}
            finally:
                pool.shutdown(wait=True)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert os.getpid() not in pids
    assert not [w for w in caught if "fork" in str(w.message)], [str(w.message) for w in caught]
