"""The publish pointers last read from local files, and whether each is still the file there.

A snapshot's pointer (``index.json``: its versions and the current one) is mutable, so every
request must follow the pointer as it is NOW. On a store that keeps its blobs as local files
(``BlobStore.local_path``), the filesystem store replaces a blob by renaming a new file over
it, never by writing in place: a pointer file that still has the same device, inode, size and
modification time is the very file read before. So one ``stat`` (no open, no read, no decode)
answers "unchanged" on the event loop, and a request that finds it so needs no worker-thread
hop to read the pointer (docs/snapshots.md, "The pointer unchanged").

The file is PINNED before it is read: opened, and its stamp taken from the open file. Two
things follow. A publish that renames a new pointer in between leaves the pinned (old) file's
stamp with the new content, so the next look sees a different file and reads again (never the
other way round: a new stamp with the old content would be stale for good). And the pinned
file's inode cannot be freed while it is held open, so no new pointer can ever get the same
device and inode: "same stamp" means "same file", exactly. The entry keeps the file open until
it is replaced, dropped, or its ``Pointers`` is collected; at most ``HELD`` entries (and open
files) per ``Pointers``, the oldest dropped first (a dropped pointer is read again next time).

Only pointers that were read are remembered, so an identifier never read (a hostile one
included) is simply not found: the look-up needs no validation of its own. Each entry keeps
the file's path, so a request does not rebuild it. Thread-safe: the look-up reads one tuple
replaced whole; ``remember`` (worker threads) changes entries and closes files under a lock.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path

import msgspec

from feedserver.feeds.snapshots.manifest import SnapshotIndex

Stamp = tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns)
HELD = 128  # entries (each an open file) per Pointers: well under a process's 1,024 files


class Pin(msgspec.Struct, frozen=True):
    """A pointer file held open (``fd``) and its stamp, taken from the open file."""

    fd: int
    stamp: Stamp


def stamp(path: Path) -> Stamp | None:
    """What identifies the file at ``path`` now; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:  # missing, or unreadable: the read decides and reports
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def pin(path: Path) -> Pin | None:
    """Open the file at ``path`` and stamp it (before reading it); None when there is none.
    The caller hands the pin to ``Pointers.remember`` or ``release``s it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # missing, or unreadable: the read decides and reports
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    return Pin(fd, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


def release(held: Pin | None) -> None:
    """Close a pin that will not be remembered."""
    if held is not None:
        os.close(held.fd)


def _close_all(entries: dict[str, tuple[Path, Pin, SnapshotIndex]]) -> None:
    for _, held, _ in entries.values():
        os.close(held.fd)
    entries.clear()


class Pointers:
    """Per snapshot identifier: the pointer last read from its local file, with that file
    pinned (held open) before the read."""

    def __init__(self, held: int = HELD) -> None:
        self._seen: dict[str, tuple[Path, Pin, SnapshotIndex]] = {}
        self._held = held
        self._lock = threading.Lock()
        # the files still held are closed when this object goes (a store dropped in tests)
        self._finalizer = weakref.finalize(self, _close_all, self._seen)

    def remember(self, identifier: str, path: Path, held: Pin | None,
                 index: SnapshotIndex) -> None:
        """``index`` was just read from ``path``, pinned as ``held`` before the read; the
        entry owns the pin from now on."""
        with self._lock:
            old = self._seen.pop(identifier, None)
            if held is not None:
                if len(self._seen) >= self._held:  # the oldest entry goes, its file closed
                    oldest = next(iter(self._seen))
                    release(self._seen.pop(oldest)[1])
                self._seen[identifier] = (path, held, index)
            if old is not None:
                release(old[1])

    def unchanged(self, identifier: str) -> SnapshotIndex | None:
        """The pointer last read for ``identifier`` when its file is still the one read;
        else None (never read, or replaced since: read it again)."""
        seen = self._seen.get(identifier)
        if seen is None or stamp(seen[0]) != seen[1].stamp:
            return None
        return seen[2]

    def held(self) -> int:
        """The pointer files held open now."""
        return len(self._seen)
