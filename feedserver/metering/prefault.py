"""Pages of a mapped journal segment made writable ahead of the appends, off the event loop.

An append is one copy into the segment's shared mapping (``journal.py``). The first store into
a page of it faults, and so does the first store after a sync cleaned the page: the
kernel maps the page in, and on ext4 a page of a ``posix_fallocate``d (unwritten) extent
starts a filesystem journal handle, which waits while a commit is running, which syncs
start. Those faults ran on the event loop: one per ~15 metadata responses, ~50 µs each,
up to milliseconds (docs/metering.md, "Appends without page faults").

``Ahead.populate`` has the kernel fault a range in writable (``MADV_POPULATE_WRITE``, Linux
5.14) without changing a byte of it, from the journal's own populating thread
(``Journal._refill``); the event loop's next stores then find their pages mapped. The call
goes through ``ctypes``, which releases the GIL for it (``mmap.madvise`` holds it: a wait in
the kernel would stall the event loop). Where the advice is unknown (another OS, an older
kernel) populating is skipped: appends are as before, only slower.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import sys
import threading
from collections.abc import Callable

_MADV_POPULATE_WRITE = 23  # linux/mman.h (not in Python's ``mmap`` before 3.14)
_PAGE = mmap.PAGESIZE


def _madvise() -> Callable[[int, int, int], int] | None:
    """libc's ``madvise(address, length, advice)`` (releasing the GIL while it runs), or
    None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    fn = ctypes.CDLL(None, use_errno=True).madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    call: Callable[[int, int, int], int] = fn
    return call


_MADVISE = _madvise()


class Ahead:
    """Populating ``mapping`` (a writable shared mapping) ahead of its appends. ``close``
    before the mapping is closed: a populate in progress finishes first, none starts after."""

    supported = _MADVISE is not None  # False once the kernel refused the advice

    def __init__(self, mapping: mmap.mmap) -> None:
        # The mapping's address: taken through a buffer export that is released at once (an
        # export held would make ``mapping.close()`` fail); it stays valid until that close.
        view = ctypes.c_char.from_buffer(mapping)
        self._address = ctypes.addressof(view)
        del view
        self._size = len(mapping)
        self._lock = threading.Lock()
        self._closed = False

    def populate(self, offset: int, length: int) -> int:
        """Make the pages of ``[offset, offset + length)`` present and writable (the page
        holding ``offset`` included); returns the bytes populated (0: skipped)."""
        start = offset - offset % _PAGE
        end = min(self._size, offset + length)
        if end <= start or _MADVISE is None or not Ahead.supported:
            return 0
        with self._lock:
            if self._closed:
                return 0
            if _MADVISE(self._address + start, end - start, _MADV_POPULATE_WRITE) == 0:
                return end - start
        if ctypes.get_errno() == errno.EINVAL:  # a kernel before 5.14: never again
            Ahead.supported = False
        return 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
