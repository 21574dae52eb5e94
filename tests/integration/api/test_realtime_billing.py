"""Issue 11, item 8: a realtime event is billed at most once per customer and view.

A client reads 1,000 events and stops reading; the server keeps pushing into the socket
buffers until the client drops the connection. The client then resumes with ``Last-Event-ID``
(the position after the 1,000th event) and reads everything that is left: the events the
first stream left in the socket are delivered again. The client read every event once, and the
ledger must bill each once, whether the resume arrives after the server noticed the drop or
while the first stream is still open. The old code billed the re-delivered events twice
(4,985 events for 3,000 read).

Real uvicorn on 127.0.0.1, the embedded event log, the real metering (journal, writer,
hash-chained ledger in SQLite).
"""

from __future__ import annotations

import asyncio
import fcntl
import sys
import termios
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest

from feedserver.feeds.events.consumer import EventConsumer
from feedserver.metering.ledger import Ledger
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing
from tests.integration.realtime_harness import (
    encode,
    make_accounts,
    serve,
    settings_for,
    synthetic_events,
)

pytestmark = pytest.mark.integration
SOURCE = "mediawiki.page_change.v1"
EVENTS = 3000
READ_FIRST = 1000
UNREAD = 16 * 1024  # unread bytes in the client's socket: ~5 event frames the server sent
# The first stream's final usage record is in the ledger (the writer flushes every 50 ms).
FIRST_BILLED = ("SELECT COUNT(*) FROM usage_ledger WHERE feed = 'realtime' "
                "AND meter = 'requests'")


class SSEReader:
    """Reads raw SSE and counts, per event frame PROCESSED, the bytes the server metered
    (``id: ...\\nevent: message\\ndata: ...\\n\\n``)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.body = resp.aiter_raw()
        self.buffer = b""
        self.events = 0
        self.bytes = 0
        self.last_id: str | None = None

    async def frame(self, timeout: float = 30.0) -> bytes:
        while b"\n\n" not in self.buffer:
            self.buffer += await asyncio.wait_for(anext(self.body), timeout)
        frame, _, self.buffer = self.buffer.partition(b"\n\n")
        for line in frame.split(b"\n"):
            if line.startswith(b"id: "):
                self.last_id = line[4:].decode()
        if b"\nevent: message\n" in frame:
            self.events += 1
            self.bytes += len(frame) + 2
        return frame

    async def read_events(self, count: int) -> None:
        while self.events < count:
            await self.frame()

    async def wait_unread(self, at_least: int, timeout: float = 30.0) -> None:
        """Until the kernel holds ``at_least`` bytes the client has not read from the socket."""
        sock = self.resp.extensions["network_stream"].get_extra_info("socket")
        deadline = time.monotonic() + timeout
        while True:
            queued = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
            if int.from_bytes(queued, sys.byteorder) >= at_least:
                return
            assert time.monotonic() < deadline, "the server did not fill the socket"
            await asyncio.sleep(0.02)

    async def read_until_idle(self) -> None:
        """Every event the server has, until a heartbeat says nothing more is waiting."""
        while True:
            if (await self.frame()).startswith(b": heartbeat"):
                return


@asynccontextmanager
async def sse(url: str, key: str, *, last_event_id: str | None = None,
              body: dict[str, object] | None = None) -> AsyncIterator[SSEReader]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client, \
            client.stream("POST", f"{url}/v2/articles", json=body or {},
                          headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        yield SSEReader(resp)


def _wait_for(db: SQLiteDatabase, sql: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (row := db.fetchone(sql)) or not row[0]:
        assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
        time.sleep(0.05)


@pytest.mark.parametrize("resume_while_open", [False, True])
async def test_resumed_stream_bills_what_the_client_read(tmp_path: Path,
                                                         resume_while_open: bool) -> None:
    settings = msgspec.structs.replace(settings_for(tmp_path, event_topics=[SOURCE]),
                                       metering_enabled=True, ledger_flush_seconds=0.05)
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    log = EmbeddedEventLog(db, poll_interval=0.02)
    server_log = EmbeddedEventLog(SQLiteDatabase(tmp_path / "feedserver.db"), poll_interval=0.02)
    accounts, keys = make_accounts(db, settings)
    consumer = EventConsumer.from_settings(settings, log, db)
    await consumer.start()
    try:
        await log.create_topic(SOURCE, 1)
        await log.append(SOURCE, [Outgoing(key=None, value=v)
                                  for v in encode(synthetic_events(EVENTS, body_bytes=3000))])
        await consumer.run(once=True)
        start = {"offsets": {str(p): 0 for p in range(settings.article_partitions)}}
        with serve(settings, db, accounts, events=server_log) as srv:
            async with AsyncExitStack() as stack:
                first = await stack.enter_async_context(sse(srv.url, keys.everything,
                                                            body=start))
                await first.read_events(READ_FIRST)
                # Stop reading: the server fills the socket buffers meanwhile. Waited for, not
                # slept on: the scenario needs events the client never read (a fixed second
                # was not always enough on a loaded machine).
                await first.wait_unread(UNREAD)
                ack = first.last_id
                if not resume_while_open:
                    await stack.aclose()  # drop the connection...
                    _wait_for(db, FIRST_BILLED)  # ...and the server noticed: the stream ended
                # An EventSource reconnects with the original body and Last-Event-ID.
                second = await stack.enter_async_context(
                    sse(srv.url, keys.everything, body=start, last_event_id=ack))
                if resume_while_open:
                    await asyncio.sleep(0.5)  # the resume is recorded, the first still open
                    await stack.enter_async_context(_closing(first))
                    _wait_for(db, FIRST_BILLED)
                await second.read_events(EVENTS - READ_FIRST)
                await second.read_until_idle()
                read_events = first.events + second.events
                read_bytes = first.bytes + second.bytes
    finally:
        await log.close()
    assert read_events == EVENTS
    per_stream = [int(q) for (q,) in db.fetchall(
        "SELECT quantity FROM usage_ledger WHERE feed = 'realtime' AND meter = 'stream_events' "
        "ORDER BY seq")]
    # The scenario really left events unread in the socket: the first stream (the first row:
    # it ended first) delivered more than the client read from it. Loopback buffers autotune
    # to megabytes, so on a loaded machine the first stream can hand over all 3,000 frames
    # before the client drops it: the resumed stream then only re-delivers, bills nothing
    # and writes no row of its own (seen once in a whole run while pip installs ran).
    assert per_stream and per_stream[0] > READ_FIRST and len(per_stream) <= 2
    # ...and still every event is billed once.
    assert sum(per_stream) == read_events
    row = db.fetchone("SELECT SUM(quantity) FROM usage_ledger WHERE feed = 'realtime' "
                      "AND meter = 'bytes'")
    assert row is not None
    # Bytes: each event's frame once. A re-delivered SSE frame's ``id:`` line carries the
    # positions of every partition at that moment, so it may differ from the first frame of
    # the same event by a few digits (ids are at most 4 x 5 characters here).
    assert abs(int(row[0]) - read_bytes) <= 20 * (EVENTS - READ_FIRST)
    assert Ledger(db).verify().ok


@asynccontextmanager
async def _closing(reader: SSEReader) -> AsyncIterator[None]:
    """Close ``reader``'s connection now (the context it was opened in exits later)."""
    await reader.resp.aclose()
    yield
