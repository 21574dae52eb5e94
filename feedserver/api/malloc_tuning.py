"""Keep freed memory for reuse in a server process (glibc malloc): relayed blocks are not
faulted in again page by page.

A download streamed from S3 is read in worker threads (``api/blob_stream.py``): every block is
a fresh 1 MiB ``bytes``, allocated by the reading thread and freed by the event loop once sent,
a few MiB in flight per download. glibc's thresholds adapt to such blocks (served from the
heap once one was freed, the trim threshold then twice that: 2 MiB), so as soon as a window's
blocks were freed the top of the heap went back to the kernel, and the next blocks faulted the
same memory in again: 50-80 minor page faults per MB relayed, ~9% of the server's CPU
(measured in docs/api.md, "S3 (proxied), fourth round"). With fixed thresholds (blocks up to
32 MiB from the heap, trimmed only beyond 64 MiB free) freed blocks are reused: ~5 faults per
MB, and 8-10% less server CPU per GB. The cost: a process keeps up to 64 MiB of freed memory
per heap instead of returning it.

Settings an operator gave glibc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or
the same through ``GLIBC_TUNABLES``) are left alone; with another C library nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc <malloc.h> parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the most glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 64 * 1024 * 1024
_OPERATOR = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds (see the module's text) for this process. True
    when done; False where the C library is not glibc or the operator tuned malloc."""
    if any(name in os.environ for name in _OPERATOR) or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this interpreter runs on
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) \
        and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
