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
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def count_body_bytes(
    chunks: AsyncIterable[bytes] | Iterable[bytes],
    report: Callable[[int], None],
    *,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_bytes: int = 0,
    checkpoint_seconds: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    source = chunks if isinstance(chunks, AsyncIterable) else _aiter(chunks)
    sent = 0
    every = checkpoint is not None and (checkpoint_bytes > 0 or checkpoint_seconds > 0)
    mark = checkpoint_bytes if checkpoint_bytes > 0 else float("inf")
    due = clock() + checkpoint_seconds if checkpoint_seconds > 0 else float("inf")
    try:
        async for chunk in source:
            yield chunk
            sent += len(chunk)
            if every and (sent >= mark or clock() >= due):
                assert checkpoint is not None
                checkpoint(sent)
                if checkpoint_bytes > 0:
                    mark = sent + checkpoint_bytes
                if checkpoint_seconds > 0:
                    due = clock() + checkpoint_seconds
    finally:
        report(sent)
