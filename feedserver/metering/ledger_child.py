"""The ledger appender child: ``python -m feedserver.metering.ledger_child FD PARENT_PID``.

Started by ``ledger_process.LedgerProcess`` with one end of a socket pair as file descriptor
``FD``. It reads frames (below), appends each to the ledger with ``Ledger.append`` and
answers one line per frame. It exits at end-of-file of its socket, and when the API process
``PARENT_PID`` is gone (a pidfd, or a look every ``PARENT_CHECK_SECONDS`` where the kernel has
none), after the append it is in. Idle, it sleeps in one ``poll`` until a frame, end-of-file or
the parent's exit: no timer wakes it. Every wait is bounded: a frame that began must arrive
whole within ``BODY_SECONDS``, and a malformed one gets an answer, never a hang.

Wire:
* a frame is a 16-byte header, ``L`` + 14 decimal digits (the body's length) + ``\\n``,
  then the body. The first frame's body is the ``Settings`` as JSON (the database URL and
  the grace period of late months); every later body is journal lines: a batch of the
  writer is the journal's own lines as they are (one per response, ``response_usage.line``),
  a replay is records (``journal.encode_lines``); both are read with the journal's own
  decoder (``journal.parse_segment``, which expands a response's line into its records), so
  the API process derives nothing, and a change of the journal's line format reaches here;
* a frame whose header starts with ``F`` instead (``sync_frame``) names ranges of journal
  segment files, a JSON array of ``[absolute path (ending in the journal's suffix), segment
  number, start, end]``: the child makes each range durable (``journal.sync_range``; a file
  gone was committed and deleted: nothing to do) and answers once they are, before the
  writer sends the batch's lines, so the API process needs no worker thread for its
  journal's sync;
* an answer is one JSON line, a ``Reply``: ``ok`` with the number of new rows, or the
  error's class name and detail. The answer to the first frame says whether the ledger
  opened. A body with an undecodable or torn line is refused whole (nothing appended).
Imports stay lean (no asyncio): the child starts with each app.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from collections.abc import Sequence

import msgspec

from feedserver.config import Settings
from feedserver.errors import FeedError
from feedserver.metering.batch_rows import batch_rows
from feedserver.metering.journal import SUFFIX, Written, parse_segment, sync_range
from feedserver.metering.ledger import Ledger
from feedserver.metering.periods import Periods
from feedserver.storage.db import Database, connect

HEADER = 16  # b"L" + 14 digits + b"\n"
FRAME_MAX = 256 * 1024 * 1024  # a longer body is refused
BODY_SECONDS = 30.0  # longest wait for the rest of a frame once it began
PARENT_CHECK_SECONDS = 1.0  # without a pidfd, the child looks for its parent this often


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """The child's answer to a frame."""

    ok: bool
    new: int = 0  # rows that were not in the ledger yet
    error: str = ""  # the class name of the child's error ("BadFrame": the wire's)
    detail: str = ""


_encode_reply = msgspec.json.Encoder().encode
_decode_ranges = msgspec.json.Decoder(list[Written]).decode


def header(size: int, kind: bytes = b"L") -> bytes:
    return kind + b"%014d\n" % size


def sync_frame(written: Sequence[Written]) -> bytes:
    """The frame asking the child to make the journal segments' ranges ``written`` durable
    (``Journal.unsynced``; JSON: a data directory may hold any character)."""
    body = msgspec.json.encode(list(written))
    return header(len(body), b"F") + body


def ledger_periods(settings: Settings) -> Periods:
    """The months the ledger keeps open: one rule for the API process and the child."""
    return Periods.hours(settings.usage_grace_hours)


class _Gone(Exception):
    """The parent closed its end, died, or cut a frame short: the child's loop ends."""


def serve(sock: socket.socket, parent: int) -> None:
    """Open the ledger the first frame names, then append frame by frame until the end."""
    pidfd = _watch(parent)
    if pidfd is None:
        return
    db: Database | None = None
    try:
        first = _next_frame(sock, pidfd, parent)
        if first is None:
            return
        try:
            config = msgspec.json.decode(first[1], type=Settings)
            db = connect(config.database)
            ledger = Ledger(db, periods=ledger_periods(config))
        except (msgspec.DecodeError, ValueError) as exc:
            _answer(sock, Reply(ok=False, error="BadFrame", detail=str(exc)))
            return
        except FeedError as exc:
            _answer(sock, Reply(ok=False, error=type(exc).__name__, detail=exc.detail))
            return
        _answer(sock, Reply(ok=True))
        while (frame := _next_frame(sock, pidfd, parent)) is not None:
            kind, body = frame
            _answer(sock, sync(body) if kind == b"F"
                    else append(ledger, body, batches=config.ledger_granularity == "batch"))
    except _Gone:
        return
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        sock.close()
        if db is not None:
            db.close()


def append(ledger: Ledger, body: bytes, *, batches: bool = False) -> Reply:
    """Append one frame's records; a damaged frame is refused whole. ``batches``
    (``ledger_granularity = "batch"``): a frame of response lines is booked as one row per
    group, its lines kept as evidence (``batch_rows``)."""
    try:
        if batches and body[:1] == b"[":
            try:
                batch = batch_rows(body)
            except msgspec.DecodeError as exc:
                return Reply(ok=False, error="BadFrame", detail=str(exc)[:300])
            return Reply(ok=True, new=ledger.append_batch(batch))
        records, bad, torn = parse_segment(body)
        if bad or torn:
            return Reply(ok=False, error="BadFrame",
                         detail=f"{bad} undecodable line(s), torn tail: {torn}")
        return Reply(ok=True, new=ledger.append(records))
    except FeedError as exc:  # rolled back: nothing of the frame is kept
        return Reply(ok=False, error=type(exc).__name__, detail=exc.detail)


def sync(body: bytes) -> Reply:
    """Make the ranges of journal segment files a ``sync_frame`` names durable (a file
    already deleted is committed: skipped). A name that is not an absolute path of a journal
    segment, or a range that is not one, refuses the frame; a failed sync is an error the
    writer retries (its lines stay journaled)."""
    try:
        ranges = _decode_ranges(body)
    except msgspec.DecodeError as exc:
        return Reply(ok=False, error="BadFrame", detail=str(exc))
    for w in ranges:
        if not os.path.isabs(w.path) or not w.path.endswith(SUFFIX) or "\0" in w.path:
            return Reply(ok=False, error="BadFrame",
                         detail=f"not a journal segment: {w.path!r}")
        if not 0 <= w.start <= w.upto:
            return Reply(ok=False, error="BadFrame",
                         detail=f"not a range: {w.start}..{w.upto} of {w.path!r}")
    for w in ranges:
        try:
            _sync(w)
        except (OSError, ValueError, OverflowError) as exc:
            return Reply(ok=False, error="JournalSyncFailed", detail=f"{w.path}: {exc}")
    return Reply(ok=True)


def _sync(written: Written) -> None:
    """Make ``written``'s range of its segment file durable (``journal.sync_range``);
    nothing when the file is gone (committed and deleted)."""
    try:
        fd = os.open(written.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        sync_range(fd, written.start, written.upto)
    finally:
        os.close(fd)


def _watch(parent: int) -> int | None:
    """A pidfd of the parent (readable once it exited; -1 where the kernel has none: the
    child then looks every ``PARENT_CHECK_SECONDS``), or None when it is gone already."""
    try:
        return os.pidfd_open(parent)
    except ProcessLookupError:
        return None
    except OSError:
        return -1


def _next_frame(sock: socket.socket, pidfd: int, parent: int) -> tuple[bytes, bytes] | None:
    """The next frame's kind (``L`` or ``F``) and body; None after answering a malformed
    header (the next frame cannot be found). Raises ``_Gone`` at end-of-file, when the
    parent died, or when a frame stops short."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    # With a pidfd the parent's exit wakes the poll itself: no timeout, so an idle child never
    # wakes (it used to wake every second, per API worker, for nothing).
    timeout = None if pidfd >= 0 else int(PARENT_CHECK_SECONDS * 1000)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    while True:  # bounded by the parent's life: each turn ends or looks at it
        ready = dict(poller.poll(timeout))
        if pidfd in ready or not _alive(parent):
            raise _Gone
        if ready:
            break
    sock.settimeout(BODY_SECONDS)
    try:
        head = _read(sock, HEADER)
        digits = head[1:-1]
        kind = head[:1]
        if kind not in (b"L", b"F") or head[-1:] != b"\n" or not digits.isdigit() \
                or int(digits) > FRAME_MAX:
            _answer(sock, Reply(ok=False, error="BadFrame", detail=f"bad header {head!r}"))
            return None
        return kind, _read(sock, int(digits))
    except OSError as exc:  # a timeout too: a frame cut short, nobody waits for its answer
        raise _Gone from exc
    finally:
        sock.settimeout(None)


def _read(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:  # bounded: each turn reads at least a byte, or ends (EOF, timeout)
        n = sock.recv_into(view[got:])
        if n == 0:
            raise _Gone  # at a frame's start the clean end, else a frame cut short
        got += n
    return bytes(buf)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's (a reused pid, at worst)
        return True
    return True


def _answer(sock: socket.socket, reply: Reply) -> None:
    try:
        sock.sendall(_encode_reply(reply) + b"\n")
    except OSError as exc:
        raise _Gone from exc


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group; the API process then flushes its last batch
    # through this child, which leaves at end-of-file instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd, parent = int(argv[0]), int(argv[1])
    serve(socket.socket(fileno=fd), parent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
