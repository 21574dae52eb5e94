"""Count the bytes of an HTTP response body that were actually delivered.

``count_body_bytes`` wraps the body iterator handed to the HTTP server. A chunk counts once the
server has taken it: the generator is resumed after ``yield`` only when the ASGI ``send`` of that
chunk returned. If the client disconnects, the server closes the generator at that ``yield`` and
the chunk is not counted. The ``finally`` reports the total in every case (complete, cut or
cancelled). ``checkpoint_bytes`` > 0 also journals a cumulative checkpoint every so many bytes, so
even a ``kill -9`` of the server mid-body is metered up to the last checkpoint.
"""

from __future__ import annotations

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
) -> AsyncIterator[bytes]:
    source = chunks if isinstance(chunks, AsyncIterable) else _aiter(chunks)
    sent = 0
    mark = checkpoint_bytes
    try:
        async for chunk in source:
            yield chunk
            sent += len(chunk)
            if checkpoint is not None and checkpoint_bytes and sent >= mark:
                checkpoint(sent)
                mark = sent + checkpoint_bytes
    finally:
        report(sent)
