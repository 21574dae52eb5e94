"""Only the body bytes the server took count, whatever ends the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

from feedserver.api.body_bytes import count_body_bytes


async def test_counts_only_what_was_taken() -> None:
    seen: list[int] = []
    marks: list[int] = []
    stream = count_body_bytes([b"a" * 10, b"b" * 10, b"c" * 10], seen.append,
                              checkpoint=marks.append, checkpoint_bytes=15)
    got = [await stream.__anext__(), await stream.__anext__()]
    await stream.aclose()  # the client went away while the second chunk was being sent
    assert len(b"".join(got)) == 20
    assert seen == [10] and marks == []
    seen.clear()
    async for _ in count_body_bytes([b"a" * 10, b"b" * 10, b"c" * 10], seen.append,
                                      checkpoint=marks.append, checkpoint_bytes=15):
        pass
    assert seen == [30] and marks == [20]


async def test_checkpoints_by_time_as_well() -> None:
    """A slow download of small chunks still journals a checkpoint every N seconds."""
    now = [0.0]
    marks: list[int] = []
    seen: list[int] = []

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(6):
            now[0] += 2.0  # each chunk takes two (fake) seconds to reach the client
            yield b"x" * 10

    async for _ in count_body_bytes(slow(), seen.append, checkpoint=marks.append,
                                    checkpoint_bytes=10**9, checkpoint_seconds=5.0,
                                    clock=lambda: now[0]):
        pass
    assert marks == [30, 60] and seen == [60]
