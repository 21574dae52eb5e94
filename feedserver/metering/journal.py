"""Write-ahead usage journal: local NDJSON segments under ``<data_dir>/usage-journal/``.

One line per response (``ResponseUsage``, a compact JSON array; ``expand`` makes its usage
records). Segments written before that held one ``UsageRecord`` object per line; both kinds
are read by ``decode_line`` (the ONE decoder of journal lines: recovery, ``usage replay``, and
any reader of a segment), in any mix.

Every response's usage is in the kernel's page cache before ``record()`` returns: a segment is
a file mapped into the process (``MAP_SHARED``), and an append is one copy into that mapping.
Pages of a shared file mapping belong to the kernel, so they survive a ``kill -9`` of the
process exactly as the bytes of a ``write`` do, and usage delivered to a client is never lost
between delivery and the ledger commit; a sync of the range written (``sync_range``, batched by
the writer task) extends that to power loss. No system call per append: a ``write`` gives up
the GIL, and on a busy server the event loop then waits for whichever thread took it
(measured: tens to hundreds of microseconds per response). A segment is deleted once every
line in it is committed.

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
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from feedserver.metering.prefault import Ahead
from feedserver.metering.records import UsageRecord, merge
from feedserver.metering.response_usage import ResponseUsage, expand

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_records = msgspec.json.Decoder(UsageRecord)
_responses = msgspec.json.Decoder(ResponseUsage)
SUFFIX = ".journal"
CREATING = ".new"  # a segment being made: ``<name>.journal.new`` until it is locked
ABANDONED_SECONDS = 60.0  # a segment still being made after this long was abandoned


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
        line = line.lstrip(b"\0")  # a batch's page padding (``Journal.unsynced``)
        if not line.strip():
            continue
        try:
            records.extend(decode_line(line))
        except msgspec.DecodeError:
            bad += 1
    return records, bad, torn


def decode_lines(lines: Iterable[bytes]) -> list[UsageRecord]:
    """The records of whole journal ``lines`` (newlines optional), an undecodable line
    skipped and logged as replay skips it: a line a caller broke (``Usage``'s types) is lost
    alone, never its batch. The writer's batches and the appender's refused batches."""
    records: list[UsageRecord] = []
    for line in lines:
        try:
            records.extend(decode_line(line))
        except msgspec.DecodeError as exc:
            log.error("usage line not decodable, skipped (%s): %r", exc, line[:300])
    return records


def decode_line(line: bytes) -> list[UsageRecord]:
    """The usage records of one journal line (with or without its newline), whichever kind it
    is: a response's line (a JSON array, ``ResponseUsage``) is expanded into its records, an
    older line (a JSON object) is one ``UsageRecord``. Raises ``msgspec.DecodeError``
    (validation errors included) for a line that is neither."""
    if line[:1] == b"[":
        return expand(_responses.decode(line))
    return [_records.decode(line)]


# The smallest mapping of a segment (``segment_bytes`` is when to rotate; tests set it tiny).
_MIN_MAP = 1024 * 1024
# How far beyond the head's tail its pages are kept writable (``prefault.py``): the next
# part is populated once the appends have used half of it (~1,900 metadata responses).
# Syncs clean only the pages written (a range, ``Written``), so those ahead stay writable.
AHEAD_BYTES = 1024 * 1024


class Written(msgspec.Struct, frozen=True, array_like=True):
    """A segment's bytes written since its last sync: its file, its number, and the range
    ``[start, upto)`` to make durable (``start`` is where the last sync ended)."""

    path: str
    number: int
    start: int
    upto: int


def sync_range(fd: int, start: int, upto: int) -> None:
    """Make the bytes ``[start, upto)`` of the file ``fd`` durable, and no others: the range's
    pages are written back and the file's metadata that reading them needs is committed
    (``msync(MS_SYNC)`` of a shared mapping of the range, which Linux runs as ``fdatasync``
    limited to it). An ``fsync`` would also write back the populated pages after the tail,
    and cleaning them makes them fault again at the next appends (``prefault.py``). The
    range is clamped to the file's size (a segment closed since is truncated to its lines)."""
    upto = min(upto, os.fstat(fd).st_size)
    if start >= upto:
        return
    first = start - start % mmap.PAGESIZE
    with mmap.mmap(fd, upto - first, offset=first) as pages:
        pages.flush()


def claim(path: Path) -> int | None:
    """Open and lock a segment left by a dead process, or None: a live process holds it, or it
    went after it was listed (workers share the directory: a sibling deleted its committed
    segment, or recovered and discarded this one first; either way its records are in the
    ledger). Whoever deletes a segment holds its lock until the file is unlinked, so a lock
    taken on a file already unlinked (opened just before the deletion) claims nothing."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # a live process still writes it
        return None
    if os.fstat(fd).st_nlink == 0:  # deleted between our open and our lock
        os.close(fd)
        return None
    return fd


def _remove_abandoned(path: Path) -> None:
    """Delete a segment a process died making (before its rename: it holds no record). One
    younger than ``ABANDONED_SECONDS`` is left alone: its maker may not have locked it yet."""
    try:
        if time.time() - path.stat().st_mtime < ABANDONED_SECONDS:
            return
    except FileNotFoundError:
        return
    fd = claim(path)
    if fd is not None:
        path.unlink(missing_ok=True)
        os.close(fd)


class _Segment:
    """One new segment file, locked and mapped; the mapping's position is where the next line
    goes (``mmap.write``), ``synced`` how far it was when last synced."""

    def __init__(self, path: Path, capacity: int, number: int) -> None:
        self.path = path
        self.number = number
        # Made under another name and renamed once locked: a sibling's recovery lists only
        # ``*.journal``, so it can never lock a live segment before its creator does.
        creating = path.with_name(path.name + CREATING)
        self.fd = os.open(creating, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(self.fd, 0, capacity)  # ENOSPC here, never a SIGBUS later
            os.rename(creating, path)
            self.map = mmap.mmap(self.fd, capacity)
            self.ahead = Ahead(self.map)
        except BaseException:
            creating.unlink(missing_ok=True)  # gone already once renamed (the name is unique)
            os.close(self.fd)
            raise
        self.capacity = capacity
        self.pending = 0
        self.synced = 0
        self.refill_at = 0  # the tail past which the pages ahead are populated again
        self.populated = 0  # where the pages asked to be populated end
        self.padding = (0, 0)  # zeros skipped to a page's start (``Journal.unsynced``)

    def close(self, *, unlink: bool) -> None:
        self.ahead.close()  # waits for a populate of this mapping in progress
        size = self.map.tell()
        self.map.close()
        if unlink:
            self.path.unlink(missing_ok=True)
        else:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, size)  # kept for recovery: its records only
        os.close(self.fd)


class Journal:
    """Appends come from ONE thread (the event loop: ``record()``, ``progress()``, and the
    writer task's ``release``), and take no lock: an append is one ``mmap.write`` (one C call,
    atomic under the GIL) and a count. ``sync`` runs in a worker thread; it only reads how far
    each segment was written. Rotation and deletion hold ``_lock`` against it."""

    def __init__(self, directory: str | Path, *, segment_bytes: int = 32 * 1024 * 1024,
                 ahead_bytes: int = AHEAD_BYTES) -> None:
        # Absolute: its segments' paths go to the ledger appender process (``unsynced``),
        # which fsyncs nothing but absolute paths, and a later chdir must not move them.
        self.directory = Path(directory).absolute()
        self.segment_bytes = segment_bytes
        self.ahead_bytes = ahead_bytes  # 0: no populating (``bench/_journal_append.py``)
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._head: _Segment | None = None  # where appends go
        self._next = 1
        self._recovered: list[tuple[Path, int]] = []
        # The thread that populates pages ahead (``_refill``), started at ``open``: a
        # populate waits in the kernel (page faults, filesystem journal), never on the loop.
        self._populator: ThreadPoolExecutor | None = None

    # --- recovery ------------------------------------------------------------------------------
    def recover(self) -> Recovered:
        """Read (and lock) every segment left by a dead process; call ``discard()`` after commit."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in self.directory.glob("*" + SUFFIX + CREATING):
            _remove_abandoned(path)
        found: list[UsageRecord] = []
        out = Recovered(records=[], segments=[])
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            fd = claim(path)
            if fd is None:
                continue
            with open(fd, "rb", closefd=False) as fh:  # the file locked, not the name again
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
        if self.ahead_bytes > 0 and Ahead.supported:
            self._populator = ThreadPoolExecutor(1, thread_name_prefix="journal-ahead")
        self._rotate()

    def _rotate(self, at_least: int = 0) -> _Segment:
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._next}{SUFFIX}"
        seg = _Segment(self.directory / name, max(self.segment_bytes, _MIN_MAP, at_least),
                       self._next)
        self._refill(seg)  # its first pages, before its first append
        with self._lock:
            self._segments[seg.number] = seg
            old, self._head = self._head, seg
            self._next += 1
        if old is not None:
            self._maybe_delete(old.number)
        return seg

    def append(self, line: bytes) -> int:
        """Append one newline-terminated line (``response_usage.line``) with one copy into the
        mapped segment; returns the segment number to ``release`` (one line) after commit."""
        seg = self._head
        if seg is None:
            raise RuntimeError("the journal is not open")
        try:
            seg.map.write(line)
        except ValueError:  # no room left (or closed: ``_full`` tells)
            seg = self._full(seg, line)
        seg.pending += 1
        if seg.map.tell() >= seg.refill_at:
            self._refill(seg)
        return seg.number

    def _refill(self, seg: _Segment) -> None:
        """Have the populating thread make ``ahead_bytes`` after ``seg``'s tail writable, and
        do it again when the appends have used half of that: once per ~512 KiB of lines, one
        hand-over to a thread, against a page fault on the event loop per ~15 responses
        (docs/metering.md, "Appends without page faults")."""
        tail = seg.map.tell()
        if self._populator is None or not Ahead.supported:
            seg.refill_at = seg.capacity + 1  # never again
            return
        # From where the last populate ended: the appends meanwhile use pages populated
        # already, never one the thread is faulting in.
        start = max(tail, seg.populated)
        seg.populated = tail + self.ahead_bytes
        seg.refill_at = seg.populated - self.ahead_bytes // 2
        with contextlib.suppress(RuntimeError):  # shut down: closing
            self._populator.submit(seg.ahead.populate, start, seg.populated - start)

    def _full(self, seg: _Segment, line: bytes) -> _Segment:
        """Rotate for ``line``, which did not fit into ``seg``, and append it to the new segment
        (rare: the only system calls of an append)."""
        if seg.map.closed:
            raise RuntimeError("the journal is closed")
        seg = self._rotate(len(line))  # a fresh segment holds at least ``line``
        seg.map.write(line)
        return seg

    def sync(self) -> None:
        """Make every segment's bytes written since the last sync durable (``sync_range``;
        called off the event loop)."""
        with self._lock:
            written = self._written()
        for seg, upto in written:
            # OSError, ValueError: closed by a concurrent release, so its records are
            # committed anyway
            with contextlib.suppress(OSError, ValueError):
                sync_range(seg.fd, seg.synced, upto)
            seg.synced = max(seg.synced, upto)

    def unsynced(self) -> list[Written]:
        """The segments' ranges written since their last sync, for another process to make
        durable (the ledger appender: ``synced`` once it did). On the event loop, like the
        appends; the head's next append then starts on a fresh page, so the page its range
        ends in, which that sync cleans and write-protects, is never written again (the
        bytes skipped stay zeros, which readers drop)."""
        with self._lock:
            written = [Written(str(seg.path), seg.number, seg.synced, upto)
                       for seg, upto in self._written()]
        head = self._head
        if written and head is not None and not head.map.closed:
            tail = head.map.tell()
            page = tail + -tail % mmap.PAGESIZE
            if page < head.capacity:
                head.map.seek(page)
                head.padding = (tail, page)
        return written

    def _written(self) -> list[tuple[_Segment, int]]:
        """The open segments written past their last sync, with how far (``_lock`` held)."""
        return [(s, s.map.tell()) for s in self._segments.values()
                if not s.map.closed and s.map.tell() > s.synced]

    def synced(self, written: Sequence[Written]) -> None:
        """``written`` (from ``unsynced``) was made durable by another process."""
        for w in written:
            seg = self._segments.get(w.number)
            if seg is not None:
                seg.synced = max(seg.synced, w.upto)
                if seg.synced == seg.padding[0]:  # zeros follow: nothing to sync
                    seg.synced = seg.padding[1]

    def release(self, counts: Mapping[int, int]) -> None:
        """Lines counted here are committed; rotate a full segment, delete finished ones."""
        for number, n in counts.items():
            seg = self._segments.get(number)
            if seg is not None:
                seg.pending -= n
            self._maybe_delete(number)
        head = self._head
        if head is not None and head.map.tell() >= self.segment_bytes:
            self._rotate()

    def _maybe_delete(self, number: int) -> None:
        with self._lock:
            seg = self._segments.get(number)
            if seg is None or seg is self._head or seg.pending > 0:
                return
            del self._segments[number]
        seg.close(unlink=True)

    def pending(self) -> int:
        with self._lock:
            return sum(s.pending for s in self._segments.values())

    def close(self, *, delete_if_empty: bool = True) -> None:
        """Close all segments; those with nothing pending are deleted (clean shutdown)."""
        if self._populator is not None:
            self._populator.shutdown(wait=False, cancel_futures=True)
            self._populator = None
        with self._lock:
            segments = list(self._segments.values())
            self._segments.clear()
            self._head = None
        for seg in segments:
            seg.close(unlink=delete_if_empty and seg.pending <= 0)
