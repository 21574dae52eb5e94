"""The ledger appender process: ``Ledger.append`` in a child process, beside the event loop.

``LedgerProcess`` is the embedded ``Destination`` of the usage writer (``writer.py``) when
``ledger_appender = "process"``. The API process keeps the journal and its release
exactly as before; what moves is the append (the SQLite or PostgreSQL insert and the hash
chain, ~110 k instructions per metadata response, half of it Python holding the GIL). In a
worker thread of the API process that work took the GIL from the event loop between its
SQLite steps (~24 futex hand-offs per request); in a process it runs on the other core.

The child is ``python -m feedserver.metering.ledger_child`` (its wire is described there),
started when metering starts, outside any request. ``deliver_lines`` (the writer's batches)
has the child sync the journal's ranges written, then sends the journal's own lines of a batch as
they are: the child decodes and expands them (``journal.parse_segment``), so this process
derives nothing from them and has no worker thread for the batch at all; ``deliver`` (the
journal's replay at start) sends records as journal lines. Either sends a frame and awaits
the child's one-line answer on the event loop (asyncio streams: no thread hop, no blocking
call).

Exactly once: the writer releases the journal only after ``deliver`` returned, that is after
the child answered ``ok`` for every frame. Whatever else happens (the child killed, a typed
error, a hostile answer, no answer within ``ACK_SECONDS``) ``deliver`` raises
``LedgerAppenderFailed``, the writer retries with backoff, and the next ``deliver`` starts a
new child when the old one is gone; ``Ledger.append`` is idempotent by usage id, so a batch
the dead child had committed is skipped, never doubled. The child leaves at end-of-file of its
socket and when the API process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio.to_thread
import msgspec

import feedserver
from feedserver.config import Settings
from feedserver.errors import LedgerAppenderFailed
from feedserver.metering.journal import Written, decode_lines, encode_lines
from feedserver.metering.ledger_child import Reply, header, sync_frame
from feedserver.metering.records import UsageRecord
from feedserver.storage.db import Database, SQLiteDatabase

log = logging.getLogger(__name__)

FRAME_RECORDS = 20_000  # a larger delivery (a journal replay) goes in frames of this many
FRAME_LINES = 10_000  # the same for a batch of the journal's lines (~2 records per line)
ACK_SECONDS = 120.0  # longest wait for one frame's answer (SQLite waits 30 s for its lock)
START_SECONDS = 60.0  # longest wait for a new child to open the ledger
STOP_SECONDS = 10.0  # longest wait for a child to exit after end-of-file; then it is killed
# What ends an exchange with the child as "lost": its end closed or reset, a line too long
# (ValueError) or not a ``Reply``, no answer in time.
_LOST = (OSError, EOFError, ValueError, TimeoutError, msgspec.DecodeError)
_decode_reply = msgspec.json.Decoder(Reply).decode


def child_database(settings: Settings, db: Database) -> str | None:
    """The URL a child opens for the same database as ``db``, or None when it cannot (an
    in-memory SQLite database, or a database handed in that is not the one ``settings``
    name)."""
    url = settings.database
    if isinstance(db, SQLiteDatabase):
        named = connect_path(url) if url.startswith("sqlite://") else None
        if db.path == ":memory:" or named is None \
                or Path(named).resolve() != Path(db.path).resolve():
            return None
        return "sqlite:///" + str(Path(db.path).resolve())
    if db.dialect == "postgresql":  # psycopg is loaded then, and only then
        from feedserver.storage.db.postgres import PostgresDatabase

        if isinstance(db, PostgresDatabase) and db.url == url:
            return url
    return None


def connect_path(url: str) -> str | None:
    """The file of a ``sqlite://`` URL as ``connect`` reads it (None for ``:memory:``)."""
    path = url.removeprefix("sqlite://")
    path = path[1:] if path.startswith("/") else path
    return None if path in {":memory:", "/:memory:"} else path


def frames(records: Sequence[UsageRecord]) -> Iterator[bytes]:
    """The frames of one delivery, at most ``FRAME_RECORDS`` records each."""
    for start in range(0, max(len(records), 1), FRAME_RECORDS):
        body = encode_lines(records[start : start + FRAME_RECORDS])
        yield header(len(body)) + body


def line_frames(lines: Sequence[bytes]) -> Iterator[bytes]:
    """The frames of a batch of journal lines (each newline-terminated), at most
    ``FRAME_LINES`` lines each: the lines as they are, nothing re-encoded."""
    for start in range(0, max(len(lines), 1), FRAME_LINES):
        body = b"".join(lines[start : start + FRAME_LINES])
        yield header(len(body)) + body


class LedgerProcess:
    """The ``Destination`` that appends in a child process (see the module's docstring)."""

    def __init__(self, settings: Settings, database: str, *,
                 ack_seconds: float = ACK_SECONDS) -> None:
        # The child opens ``database`` (a URL) with the grace period of ``settings``.
        self.ack_seconds = ack_seconds
        config = msgspec.json.encode(msgspec.structs.replace(settings, database_url=database))
        self._config = header(len(config)) + config
        self._lock = asyncio.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        return self._child.pid if self._child is not None else None

    async def start(self) -> None:
        async with self._lock:
            if self._writer is None:
                await self._spawn()

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        _raise(await self._send(frames(records)))

    async def deliver_lines(self, lines: Sequence[bytes], *, sync: Sequence[Written] = ()
                            ) -> None:
        """Append a batch of the journal's own lines (``response_usage.line``), after the
        child made the journal's ranges ``sync`` durable (a ``sync_frame``, answered once
        they are). A batch the child refused as undecodable (a caller broke
        ``Usage``'s types; nothing of it was appended) is decoded here instead, its bad lines
        skipped and logged, as the writer did before the child read lines: one bad line never
        holds the journal back."""
        if sync:
            _raise(await self._send(iter([sync_frame(sync)])))
        refused = await self._send(line_frames(lines))
        if refused is not None and refused.error == "BadFrame":
            records = await anyio.to_thread.run_sync(decode_lines, lines)
            refused = await self._send(frames(records))
        _raise(refused)

    async def _send(self, frames: Iterator[bytes]) -> Reply | None:
        """Send ``frames`` one by one, each after the last was answered ok; the child's first
        answer that is not ok (its append rolled back, the child goes on), or None."""
        async with self._lock:
            if self._writer is None:
                await self._spawn()
            reader, writer = self._reader, self._writer
            assert reader is not None and writer is not None
            for frame in frames:
                try:
                    async with asyncio.timeout(self.ack_seconds):
                        writer.write(frame)
                        await writer.drain()
                        reply = _reply(await reader.readline())
                except _LOST as exc:
                    await self._stop(kill=True)
                    raise LedgerAppenderFailed(f"ledger appender lost: {exc!r}") from exc
                if not reply.ok:
                    return reply
            return None

    async def close(self) -> None:
        async with self._lock:
            await self._stop(kill=False)

    # --- the child's lifecycle -----------------------------------------------------------------
    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._child = await anyio.to_thread.run_sync(_popen, theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._reader, self._writer = await asyncio.open_connection(sock=ours)
        try:
            async with asyncio.timeout(START_SECONDS):
                self._writer.write(self._config)
                await self._writer.drain()
                reply = _reply(await self._reader.readline())
        except _LOST as exc:
            await self._stop(kill=True)
            raise LedgerAppenderFailed(f"ledger appender did not start: {exc!r}") from exc
        if not reply.ok:
            await self._stop(kill=True)
            raise LedgerAppenderFailed(
                f"ledger appender could not open the ledger: {reply.error}: {reply.detail}")

    async def _stop(self, *, kill: bool) -> None:
        child, writer = self._child, self._writer
        self._child = self._reader = self._writer = None
        if writer is not None:
            writer.close()  # end-of-file: the child finishes its append and leaves
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if child is not None:
            if kill:
                child.kill()
            await anyio.to_thread.run_sync(_reap, child)


def _popen(sock: socket.socket) -> subprocess.Popen[bytes]:
    # The package's own directory first on the path: the child imports this very code.
    root = str(Path(feedserver.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
    return subprocess.Popen(
        [sys.executable, "-m", "feedserver.metering.ledger_child", str(sock.fileno()),
         str(os.getpid())],
        pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL, env=env)


def _reap(child: subprocess.Popen[bytes]) -> None:
    try:
        child.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        log.warning("ledger appender %d did not leave; killing it", child.pid)
        child.kill()
        child.wait(STOP_SECONDS)


def _raise(refused: Reply | None) -> None:
    if refused is not None:
        raise LedgerAppenderFailed(
            f"ledger append failed in the appender: {refused.error}: {refused.detail}")


def _reply(line: bytes) -> Reply:
    if not line:
        raise EOFError("the ledger appender closed its end")
    return _decode_reply(line)
