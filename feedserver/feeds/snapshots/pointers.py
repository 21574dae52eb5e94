"""The publish pointers last read from local files, and whether each is still the file there.

A snapshot's pointer (``index.json``: its versions and the current one) is mutable, so every
request must follow the pointer as it is NOW. On a store that keeps its blobs as local files
(``BlobStore.local_path``), the filesystem store replaces a blob by renaming a new file over
it, never by writing in place: a pointer file that still has the same device, inode, size and
modification time is the very file read before. So one ``stat`` (no open, no read, no decode)
answers "unchanged" on the event loop, and a request that finds it so needs no worker-thread
hop to read the pointer (docs/snapshots.md, "The pointer unchanged").

The stamp is taken BEFORE the file is read: if a publish renames a new pointer in between,
the remembered stamp is the old file's, so the next look sees a different file and reads
again (never the other way round: a new stamp with the old content would be stale for good).
Only pointers that were read are remembered, so the entries are bounded by the snapshots
published, and an identifier never read (a hostile one included) is simply not found: the
look-up needs no validation of its own. Each entry keeps the file's path, so a request does
not rebuild it. Thread-safe: each entry is one tuple replaced whole.
"""

from __future__ import annotations

import os
from pathlib import Path

from feedserver.feeds.snapshots.manifest import SnapshotIndex

Stamp = tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns)


def stamp(path: Path) -> Stamp | None:
    """What identifies the file at ``path`` now; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:  # missing, or unreadable: the read decides and reports
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Pointers:
    """Per snapshot identifier: the pointer last read from its local file, with that file's
    stamp taken before the read."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Path, Stamp, SnapshotIndex]] = {}

    def remember(self, identifier: str, path: Path, before: Stamp | None,
                 index: SnapshotIndex) -> None:
        """``index`` was just read from ``path``, whose stamp was ``before``."""
        if before is None:
            self._seen.pop(identifier, None)
        else:
            self._seen[identifier] = (path, before, index)

    def unchanged(self, identifier: str) -> SnapshotIndex | None:
        """The pointer last read for ``identifier`` when its file is still the one read;
        else None (never read, or replaced since: read it again)."""
        seen = self._seen.get(identifier)
        if seen is None or stamp(seen[0]) != seen[1]:
            return None
        return seen[2]
