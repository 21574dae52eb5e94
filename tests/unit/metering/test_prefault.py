"""``prefault.Ahead``: pages faulted in writable ahead of the appends, their bytes untouched.

Residency is read from ``/proc/self/smaps`` (the mapping's ``Rss``): the kernel's own count
of the mapping's pages present, which is what the event loop's stores then no longer fault
on."""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path

import pytest

from feedserver.metering.prefault import Ahead

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="MADV_POPULATE_WRITE is Linux's")
SIZE = 4 * 1024 * 1024
PAGE = mmap.PAGESIZE


def resident(path: Path) -> int:
    """Bytes of the mapping of ``path`` present in this process (``Rss`` in smaps)."""
    return _smaps(path, "Rss:")


def dirty(path: Path) -> int:
    """Bytes of the mapping of ``path`` dirty (written, or populated writable) and not yet
    written back: pages a store does not fault on (``Shared_Dirty`` + ``Private_Dirty``)."""
    return _smaps(path, "Shared_Dirty:") + _smaps(path, "Private_Dirty:")


def _smaps(path: Path, field: str) -> int:
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.endswith(str(path)):
            value = next(x for x in lines[i + 1:] if x.startswith(field))
            return int(value.split()[1]) * 1024
    raise AssertionError(f"{path} is not mapped")


@pytest.fixture
def mapping(tmp_path: Path) -> tuple[Path, mmap.mmap]:
    path = tmp_path / "segment"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, SIZE)  # as the journal makes a segment
    m = mmap.mmap(fd, SIZE)
    os.close(fd)
    return path, m


def test_populate_makes_the_range_resident_and_changes_no_byte(
        mapping: tuple[Path, mmap.mmap]) -> None:
    path, m = mapping
    m.write(b"x" * 5000)  # the tail is inside a page after the first (4 KiB pages)
    before = resident(path)
    ahead = Ahead(m)
    populated = ahead.populate(5000, 256 * 1024)
    if not Ahead.supported:  # the first call told: a kernel before 5.14
        pytest.skip("the kernel has no MADV_POPULATE_WRITE")
    # from the page holding the tail (so the next store does not fault either)
    assert populated == 5000 + 256 * 1024 - 5000 // PAGE * PAGE
    assert resident(path) >= before + 256 * 1024 - 2 * PAGE
    assert m[:5000] == b"x" * 5000 and m[5000:SIZE] == bytes(SIZE - 5000)
    ahead.close()
    m.close()  # the buffer export taken for the address is not held: close works


def test_populate_stops_at_the_end_of_the_mapping(mapping: tuple[Path, mmap.mmap]) -> None:
    _, m = mapping
    ahead = Ahead(m)
    last = ahead.populate(SIZE - 100, 1 << 20)
    if Ahead.supported:
        assert last == PAGE  # the last page only
    assert ahead.populate(SIZE, 1 << 20) == 0
    ahead.close()
    m.close()


def test_nothing_is_populated_after_close(mapping: tuple[Path, mmap.mmap]) -> None:
    # ``close`` comes before the mapping's: an address of an unmapped range is never advised.
    path, m = mapping
    ahead = Ahead(m)
    ahead.close()
    assert ahead.populate(0, 1 << 20) == 0
    assert resident(path) == 0
    m.close()
