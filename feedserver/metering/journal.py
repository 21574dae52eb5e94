"""Write-ahead usage journal: local NDJSON segments under ``<data_dir>/usage-journal/``.

Every usage record is in the kernel's page cache before ``record()`` returns: a segment is a
file mapped into the process (``MAP_SHARED``), and an append is one copy into that mapping.
Pages of a shared file mapping belong to the kernel, so they survive a ``kill -9`` of the
process exactly as the bytes of a ``write`` do, and usage delivered to a client is never lost
between delivery and the ledger commit; ``sync()`` (fsync, batched by the writer task) extends
that to power loss. No system call per append: a ``write`` gives up the GIL, and on a busy
server the event loop then waits for whichever thread took it (measured: tens to hundreds of
microseconds per response). A segment is deleted once every record in it is committed.

A segment file is created at its mapped size with its blocks allocated up front
(``posix_fallocate``): a store into a mapped page the disk has no room for is a SIGBUS that
kills the server, where a full disk must be an error at rotation instead. Records
are written from its start, so what follows the last record is zero bytes, which readers
drop (a record line never contains a NUL byte: JSON escapes it).

At start-up ``recover()`` reads the segments no live process holds (each open segment carries an
exclusive ``flock``), the caller commits them to the ledger (idempotent by ``usage_id``) and then
``discard()``s them. A torn trailing line (a crash mid-write) has no newline and is ignored; an
undecodable line is skipped and counted. When one ``usage_id`` occurs several times (checkpoints
of a body still streaming), the largest quantity wins: checkpoints are cumulative.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from feedserver.metering.records import UsageRecord, merge

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UsageRecord)
SUFFIX = ".journal"


class Recovered(msgspec.Struct, kw_only=True):
    records: list[UsageRecord]
    segments: list[str]
    skipped_lines: int = 0
    torn_tail: int = 0


def encode_lines(records: Sequence[UsageRecord]) -> bytes:
    """The journal's lines of ``records``, newline-terminated (``parse_segment`` reads them)."""
    return _encoder.encode_lines(records)


def parse_segment(data: bytes) -> tuple[list[UsageRecord], int, bool]:
    """Records of one segment, the number of undecodable lines, and whether the tail was torn."""
    lines = data.rstrip(b"\0").split(b"\n")  # a mapped segment's unused tail is zeros
    torn = bool(lines[-1])  # no final newline: the last write never completed
    records: list[UsageRecord] = []
    bad = 0
    for line in lines[:-1]:
        if not line.strip():
            continue
        try:
            records.append(_decoder.decode(line))
        except msgspec.DecodeError:
            bad += 1
    return records, bad, torn


# The smallest mapping of a segment (``segment_bytes`` is when to rotate; tests set it tiny).
_MIN_MAP = 1024 * 1024


class _Segment:
    """One new segment file, locked and mapped; ``size`` is where the next record goes."""

    def __init__(self, path: Path, capacity: int) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(self.fd, 0, capacity)  # ENOSPC here, never a SIGBUS later
            self.map = mmap.mmap(self.fd, capacity)
        except BaseException:
            os.close(self.fd)
            raise
        self.capacity = capacity
        self.size = 0
        self.pending = 0
        self.dirty = False

    def close(self, *, unlink: bool) -> None:
        self.map.close()
        if unlink:
            self.path.unlink(missing_ok=True)
        else:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)  # kept for recovery: its records only
        os.close(self.fd)


class Journal:
    def __init__(self, directory: str | Path, *, segment_bytes: int = 32 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._current = 0
        self._next = 1
        self._recovered: list[tuple[Path, int]] = []

    # --- recovery ------------------------------------------------------------------------------
    def recover(self) -> Recovered:
        """Read (and lock) every segment left by a dead process; call ``discard()`` after commit."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found: list[UsageRecord] = []
        out = Recovered(records=[], segments=[])
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process still writes it
                continue
            with open(path, "rb") as fh:
                records, bad, torn = parse_segment(fh.read())
            if bad or torn:
                log.warning("journal %s: %d undecodable line(s), torn tail: %s", path, bad, torn)
            out.skipped_lines += bad
            out.torn_tail += int(torn)
            found.extend(records)
            self._recovered.append((path, fd))
            out.segments.append(str(path))
        out.records = merge(found)
        return out

    def discard(self) -> None:
        """Delete the recovered segments: their records are now in the ledger."""
        for path, fd in self._recovered:
            path.unlink(missing_ok=True)
            os.close(fd)
        self._recovered.clear()

    # --- appending -----------------------------------------------------------------------------
    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._rotate()

    def _rotate(self, at_least: int = 0) -> None:
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._next}{SUFFIX}"
        seg = _Segment(self.directory / name, max(self.segment_bytes, _MIN_MAP, at_least))
        with self._lock:
            self._segments[self._next] = seg
            old = self._current
            self._current = self._next
            self._next += 1
        self._maybe_delete(old)

    def append(self, records: Sequence[UsageRecord]) -> int:
        """Append with one copy into the mapped segment; returns the segment number to
        ``release`` after commit."""
        buf = _encoder.encode_lines(records)  # one NDJSON line each, newline-terminated
        for _ in range(2):  # a fresh segment holds at least ``buf``
            with self._lock:
                seg = self._segments[self._current]
                if seg.size + len(buf) <= seg.capacity:
                    seg.map[seg.size : seg.size + len(buf)] = buf
                    seg.size += len(buf)
                    seg.pending += len(records)
                    seg.dirty = True
                    return self._current
            self._rotate(len(buf))  # full: rare, the only system calls of an append
        raise AssertionError("a fresh journal segment did not hold one append")

    def sync(self) -> None:
        """fsync every segment written since the last sync (called off the event loop)."""
        with self._lock:
            dirty = [s for s in self._segments.values() if s.dirty]
            for seg in dirty:
                seg.dirty = False
        for seg in dirty:
            # OSError: closed by a concurrent release, so its records are committed anyway
            with contextlib.suppress(OSError):
                os.fsync(seg.fd)

    def release(self, counts: Mapping[int, int]) -> None:
        """Records counted here are committed; rotate a full segment, delete finished ones."""
        for number, n in counts.items():
            with self._lock:
                seg = self._segments.get(number)
                if seg is not None:
                    seg.pending -= n
            self._maybe_delete(number)
        current = self._segments.get(self._current)
        if current is not None and current.size >= self.segment_bytes:
            self._rotate()

    def _maybe_delete(self, number: int) -> None:
        with self._lock:
            seg = self._segments.get(number)
            if seg is None or number == self._current or seg.pending > 0:
                return
            del self._segments[number]
        seg.close(unlink=True)

    def pending(self) -> int:
        with self._lock:
            return sum(s.pending for s in self._segments.values())

    def close(self, *, delete_if_empty: bool = True) -> None:
        """Close all segments; those with nothing pending are deleted (clean shutdown)."""
        with self._lock:
            segments = list(self._segments.values())
            self._segments.clear()
        for seg in segments:
            seg.close(unlink=delete_if_empty and seg.pending <= 0)
