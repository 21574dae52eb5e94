"""Count the bytes of an HTTP response body that were actually delivered.

``count_body_bytes`` wraps the body iterator handed to the HTTP server. A chunk counts once the
server has taken it: the generator is resumed after ``yield`` only when the ASGI ``send`` of that
chunk returned. If the client disconnects, the server closes the generator at that ``yield`` and
the chunk is not counted. The ``finally`` reports the total in every case (complete, cut or
cancelled). ``checkpoint_bytes`` > 0 or ``checkpoint_seconds`` > 0 also journals a cumulative
checkpoint every so many bytes or seconds (whichever comes first), so even a ``kill -9`` of the
server mid-body is metered up to the last checkpoint: at most one interval (plus the chunk in
flight) is lost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable


class BodyMeter:
    """The bytes of one body delivered so far: cumulative checkpoints every
    ``checkpoint_bytes`` or ``checkpoint_seconds`` (whichever first; 0 = never) through
    ``checkpoint``, and ONE final ``report`` (``done``, idempotent)."""

    def __init__(
        self,
        report: Callable[[int], None],
        *,
        checkpoint: Callable[[int], None] | None = None,
        checkpoint_bytes: int = 0,
        checkpoint_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.report = report
        self.checkpoint = checkpoint
        self.total = 0
        self.clock = clock
        self.every_bytes = checkpoint_bytes
        self.every_seconds = checkpoint_seconds
        self.on = checkpoint is not None and (checkpoint_bytes > 0 or checkpoint_seconds > 0)
        self.mark = checkpoint_bytes if checkpoint_bytes > 0 else float("inf")
        self.due = clock() + checkpoint_seconds if checkpoint_seconds > 0 else float("inf")
        self.reported = False

    def sent(self, n: int) -> None:
        """``n`` more bytes were taken by the server."""
        self.total += n
        if self.on and (self.total >= self.mark or self.clock() >= self.due):
            self._checkpoint(self.total)

    def ahead(self, n: int) -> None:
        """``n`` bytes are about to be handed to the kernel whole (a zero-copy piece): when a
        checkpoint is due, it is taken now and includes them, so a kill while they go is
        billed at least what the client gets (and at most ``n`` more)."""
        if self.on and (self.total + n >= self.mark or self.clock() >= self.due):
            self._checkpoint(self.total + n)

    def _checkpoint(self, total: int) -> None:
        assert self.checkpoint is not None
        self.checkpoint(total)
        if self.every_bytes > 0:
            self.mark = total + self.every_bytes
        if self.every_seconds > 0:
            self.due = self.clock() + self.every_seconds

    def done(self) -> None:
        if not self.reported:
            self.reported = True
            self.report(self.total)


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def count_body_bytes(
    chunks: AsyncIterable[bytes] | Iterable[bytes],
    report: Callable[[int], None],
    *,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_bytes: int = 0,
    checkpoint_seconds: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    # ``metered`` itself, not a generator around it: closing the body must close (and
    # report) at once, and an outer generator would leave the inner one to the collector.
    return metered(chunks, BodyMeter(report, checkpoint=checkpoint,
                                     checkpoint_bytes=checkpoint_bytes,
                                     checkpoint_seconds=checkpoint_seconds, clock=clock))


async def metered(chunks: AsyncIterable[bytes] | Iterable[bytes],
                  meter: BodyMeter) -> AsyncIterator[bytes]:
    """``chunks``, each counted by ``meter`` once the server took it; ``meter.done()`` when
    the body ends, is cut or is cancelled. A source generator is closed with it, so its
    own clean-up (an open blob read) runs then, not when the collector gets to it."""
    source = chunks if isinstance(chunks, AsyncIterable) else _aiter(chunks)
    try:
        async for chunk in source:
            yield chunk
            meter.sent(len(chunk))
    finally:
        meter.done()
        if isinstance(source, AsyncGenerator):
            await source.aclose()
