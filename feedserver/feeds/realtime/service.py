"""The realtime service of a process: its one ``Hub`` over the article topic, opened on first
use (the first stream request), ended and closed by whoever owns the service (the app's
lifespan). Opening on first use keeps processes that never stream from reading the topic.
"""

from __future__ import annotations

import asyncio

from feedserver.errors import Unavailable
from feedserver.feeds.realtime.hub import BUFFER_BYTES, Hub
from feedserver.storage.eventlog import EventLog

HEARTBEAT_SECONDS = 15.0


class Realtime:
    """Hands out the process's hub; ``heartbeat`` is how long an idle stream waits before it
    sends a keep-alive."""

    def __init__(self, events: EventLog, topic: str, *, partitions: int = 10,
                 max_lag: int = 10_000, buffer_bytes: int = BUFFER_BYTES,
                 heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.events = events
        self.topic = topic
        self.partitions = partitions
        self.max_lag = max_lag
        self.buffer_bytes = buffer_bytes
        self.heartbeat = heartbeat
        self._hub: Hub | None = None
        self._lock = asyncio.Lock()
        self._ended = False

    @property
    def current(self) -> Hub | None:
        """The hub if a stream opened it already."""
        return self._hub

    async def hub(self) -> Hub:
        """The hub, started on the first call. Raises ``Unavailable`` once streams ended."""
        if self._hub is not None:
            return self._hub
        async with self._lock:
            if self._ended:
                raise Unavailable("the server is shutting down")
            if self._hub is None:
                hub = Hub(self.events, self.topic, partitions=self.partitions,
                          max_lag=self.max_lag, max_bytes=self.buffer_bytes)
                await hub.start()
                self._hub = hub
        return self._hub

    def end_streams(self) -> None:
        """End every stream with its final position (shutdown); refuse new ones."""
        self._ended = True
        if self._hub is not None:
            self._hub.end_streams()

    async def close(self) -> None:
        self._ended = True
        hub, self._hub = self._hub, None
        if hub is not None:
            await hub.close()
