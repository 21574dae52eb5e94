"""Wikimedia EventStreams client: server-sent events over HTTP, as batches to acknowledge.

``GET {base}/v2/stream/{stream}[,{stream}...]`` answers SSE frames (``event: message``, ``id:``
a JSON array of per-topic positions, ``data:`` the event JSON); httpx-sse parses them.
``EventStreamsClient.batches()`` yields ``Batch(events, position)``: the caller appends the
events durably and only THEN stores ``position`` (``sources.follow`` does exactly that), so a
kill at any point resumes from a position whose events are all stored.

Connections:

- the first connection starts at ``position`` (sent as ``Last-Event-ID``) or else ``since``
  (ISO-8601 or epoch milliseconds); every reconnect resumes after the last frame received;
- the server ends connections after a few minutes: the client reconnects at once (after the
  server's ``retry:`` if it sent one); after failures (network, timeout, 5xx, an HTML error
  page, 429) it waits a jittered exponential backoff, at least ``retry:`` and Retry-After;
  ``max_failures`` failures in a row raise ``UpstreamError`` (None: keep trying);
- connect and read timeouts catch a server that never answers (heartbeat comments keep a
  healthy idle stream under the read timeout); a 4xx other than 429 is a configuration error
  (unknown stream, bad ``since``) and raised at once.

Each frame is checked before it reaches a batch: malformed frames (other event types, a bad
``id``, oversized data), non-JSON data, invalid envelopes and unknown schemas are counted and
handed to ``dead_letter``; events of wikis not in ``wikis`` are skipped; an event whose
``meta.id`` (or, lacking one, its bytes' hash) was seen among the last ``dedup_window`` ids
(resuming by timestamp re-sends the events of that millisecond) is dropped. Skipped frames
still advance the position.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import httpx
import msgspec
from httpx_sse import ServerSentEvent, SSEError, aconnect_sse

from feedserver.errors import InvalidEvent, InvalidParameter, UpstreamError
from feedserver.ingest.envelope import decode_envelope
from feedserver.metrics import Metrics
from feedserver.sources.mediawiki import MAX_WAIT, Sleep, retry_after

log = logging.getLogger(__name__)

DeadReason = Literal["frame", "json", "schema", "unsupported"]
Cause = Literal["closed", "network", "timeout", "http", "rate_limited", "html"]
MAX_EVENT_BYTES = 4 * 1024 * 1024
MAX_ID_CHARS = 8192
HEALTHY_SECONDS = 10.0  # an idle connection closed after this long was not a failure
_STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StreamEvent(msgspec.Struct, frozen=True, kw_only=True):
    raw: bytes  # the event JSON as received
    position: str  # the SSE id of this event: resuming after it
    event_id: str  # meta.id, else "sha256:" and the hash of ``raw``
    project: str | None
    dt: datetime | None


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    events: list[StreamEvent]
    position: str  # where to resume once ``events`` are durable


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    reason: DeadReason
    detail: str
    raw: bytes
    position: str | None


DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]


class _TopicPosition(msgspec.Struct):
    topic: str
    partition: int
    offset: int | None = None
    timestamp: int | None = None


_POSITION = msgspec.json.Decoder(list[_TopicPosition])


@dataclass
class StreamStats:
    received: int = 0
    duplicates: int = 0
    other_wiki: int = 0
    dead_lettered: int = 0
    reconnects: int = 0


def check_since(since: str) -> str:
    """``since`` as EventStreams takes it: epoch milliseconds or an ISO-8601 time."""
    if since.isdigit():
        return since
    try:
        datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"since {since!r} is neither ISO-8601 nor epoch milliseconds",
                               parameter="since") from None
    return since


def valid_position(value: str) -> bool:
    if not value or len(value) > MAX_ID_CHARS:
        return False
    try:
        return bool(_POSITION.decode(value))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


class _Item(msgspec.Struct, frozen=True):
    event: StreamEvent | None
    position: str


class _Failed(msgspec.Struct, frozen=True):
    error: UpstreamError


class EventStreamsClient:
    def __init__(self, base_url: str, streams: Sequence[str], *, user_agent: str,
                 wikis: Collection[str] = (), batch_size: int = 500,
                 batch_seconds: float = 1.0, timeout: float = 60.0,
                 connect_timeout: float = 10.0, backoff: float = 1.0,
                 max_backoff: float = 60.0, max_failures: int | None = None,
                 dedup_window: int = 10_000, dead_letter: DeadLetterSink | None = None,
                 metrics: Metrics | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        bad = [s for s in streams if not _STREAM_NAME.match(s)]
        if not streams or bad:
            raise InvalidParameter(f"stream names must be given and plain: {bad}",
                                   parameter="stream")
        self.url = f"{base_url.rstrip('/')}/v2/stream/{','.join(streams)}"
        self.wikis = frozenset(wikis)
        self.batch_size = max(1, batch_size)
        self.batch_seconds = batch_seconds
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_failures = max_failures
        self.dead_letter = dead_letter
        self.metrics = metrics
        self.stats = StreamStats()
        self._sleep = sleep
        self._seen: deque[str] = deque(maxlen=max(1, dedup_window))
        self._seen_set: set[str] = set()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers={"User-Agent": user_agent}, follow_redirects=True, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    def remember(self, event_ids: Iterable[str]) -> None:
        """Ids already stored (read back at start), so they are not stored twice."""
        for event_id in event_ids:
            self._remember(event_id)

    def _remember(self, event_id: str) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(event_id)
        self._seen_set.add(event_id)

    # --- batches ----------------------------------------------------------------------------

    async def batches(self, *, position: str | None = None,
                      since: str | None = None) -> AsyncIterator[Batch]:
        """Batches of at most ``batch_size`` events, at least every ``batch_seconds`` while
        frames arrive. A batch may hold no events when only its position moved (skipped or
        dead-lettered frames)."""
        queue: asyncio.Queue[_Item | _Failed] = asyncio.Queue(maxsize=2 * self.batch_size)
        pump = asyncio.create_task(self._pump(queue, position, since and check_since(since)))
        loop = asyncio.get_running_loop()
        try:
            last = position
            while True:
                events: list[StreamEvent] = []
                item = await queue.get()  # the pump ends every wait: items, or a failure
                deadline = loop.time() + self.batch_seconds
                while True:
                    if isinstance(item, _Failed):
                        raise item.error
                    moved = item.position
                    if item.event is not None:
                        events.append(item.event)
                    remaining = deadline - loop.time()
                    if len(events) >= self.batch_size or remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                # New events are yielded even under an unchanged position: resuming by
                # timestamp re-sends that millisecond, whose next event carries the same id.
                if events or moved != last:
                    last = moved
                    yield Batch(events=events, position=moved)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    # --- the connection loop ------------------------------------------------------------------

    async def _pump(self, queue: asyncio.Queue[_Item | _Failed], position: str | None,
                    since: str | None) -> None:
        failures = 0
        retry_ms: int | None = None
        while True:
            hint: float | None = None
            received_any = False
            opened = asyncio.get_running_loop().time()
            try:
                headers = {"Last-Event-ID": position} if position else {}
                params = {"since": since} if since and not position else {}
                async with aconnect_sse(self._client, "GET", self.url, headers=headers,
                                        params=params) as source:
                    response = source.response
                    status = response.status_code
                    hint = retry_after(response.headers.get("retry-after"))
                    kind = response.headers.get("content-type", "").partition(";")[0].strip()
                    if status == 429:
                        cause: Cause = "rate_limited"
                    elif status >= 500:
                        cause = "html" if "html" in kind else "http"
                    elif status != 200:
                        raise UpstreamError(
                            f"{self.url} answered HTTP {status}: "
                            f"{await _snippet(response)}", url=self.url, status=status)
                    elif kind != "text/event-stream":
                        cause = "html"
                        log.error("EventStreams %s answered %s instead of an event stream: %s",
                                  self.url, kind or "no content type", await _snippet(response))
                    else:
                        async for sse in source.aiter_sse():
                            if sse.retry is not None:
                                retry_ms = max(0, min(sse.retry, int(MAX_WAIT * 1000)))
                            item = await self._frame(sse)
                            if item is None:
                                continue
                            if not received_any:
                                received_any, failures = True, 0
                            position = item.position
                            await queue.put(item)
                        cause = "closed"
            except httpx.TimeoutException:
                cause = "timeout"
            except (httpx.TransportError, SSEError):
                cause = "network"
            except UpstreamError as exc:
                await queue.put(_Failed(exc))
                return
            self.stats.reconnects += 1
            if self.metrics:
                self.metrics.eventstreams_reconnects.labels(cause).inc()
            server_wait = (retry_ms or 0) / 1000
            lasted = asyncio.get_running_loop().time() - opened
            if cause == "closed" and (received_any or lasted >= HEALTHY_SECONDS):
                # The server's normal end of a connection (after minutes), not a failure.
                failures = 0
                await self._sleep(server_wait + random.uniform(0, 0.1))
                continue
            failures += 1
            if self.max_failures is not None and failures > self.max_failures:
                await queue.put(_Failed(UpstreamError(
                    f"{self.url}: {failures} failed connections in a row (last: {cause})",
                    url=self.url)))
                return
            wait = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
            wait = max(random.uniform(wait / 2, wait), server_wait, hint or 0.0)
            log.warning("EventStreams %s: %s; reconnecting in %.1fs", self.url, cause, wait)
            await self._sleep(min(wait, MAX_WAIT))

    async def _frame(self, sse: ServerSentEvent) -> _Item | None:
        """A frame -> a queue item (an event, or only a new position), or None."""
        if not sse.data:
            return None  # retry-only or id-only frames
        raw = sse.data.encode("utf-8", errors="replace")
        if sse.event not in ("", "message"):
            return await self._dead(sse, "frame", f"event type {sse.event[:50]!r}", raw)
        if not valid_position(sse.id):
            return await self._dead(sse, "frame", "id is not a JSON array of positions", raw)
        self.stats.received += 1
        if len(raw) > MAX_EVENT_BYTES:
            return await self._dead(sse, "frame", f"event of {len(raw)} bytes", raw)
        try:
            envelope = decode_envelope(raw)
        except InvalidEvent as exc:
            reason = exc.extra.get("reason")
            return await self._dead(sse, reason if reason in ("json", "unsupported") else "schema",
                                    exc.detail, raw)
        if self.wikis and envelope.project not in self.wikis:
            self.stats.other_wiki += 1
            self._count("other_wiki")
            return _Item(None, sse.id)
        # Events are identified by meta.id; one without (not seen in the wild) by its bytes.
        event_id = envelope.meta.id or f"sha256:{hashlib.sha256(raw).hexdigest()}"
        if event_id in self._seen_set:
            self.stats.duplicates += 1
            self._count("duplicate")
            return _Item(None, sse.id)
        self._remember(event_id)
        return _Item(StreamEvent(raw=raw, position=sse.id, event_id=event_id,
                                 project=envelope.project, dt=envelope.meta.dt), sse.id)

    async def _dead(self, sse: ServerSentEvent, reason: DeadReason, detail: str,
                    raw: bytes) -> _Item | None:
        self.stats.dead_lettered += 1
        self._count("dead_lettered")
        if self.metrics:
            self.metrics.eventstreams_dead_lettered.labels(reason).inc()
        position = sse.id if valid_position(sse.id) else None
        log.warning("EventStreams frame set aside (%s): %s", reason, detail)
        if self.dead_letter is not None:
            await self.dead_letter(DeadLetter(reason=reason, detail=detail,
                                              raw=raw[:MAX_EVENT_BYTES], position=position))
        return None if position is None else _Item(None, position)

    def _count(self, result: str) -> None:
        if self.metrics:
            self.metrics.eventstreams_events.labels(result).inc()


async def _snippet(response: httpx.Response, limit: int = 200) -> str:
    """The start of an unexpected body (an HTML error page), for the error message."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    text = b"".join(chunks)[:limit].decode("utf-8", errors="replace")
    return " ".join(text.split())
