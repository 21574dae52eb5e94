"""Only the body bytes the server took count, whatever ends the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

from feedserver.api.body_bytes import BodyMeter, count_body_bytes


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


def test_meter_checkpoints_ahead_of_a_zero_copy_piece() -> None:
    """A piece handed to the kernel whole is journaled (when a checkpoint is due) BEFORE it
    goes, with the piece included: a kill mid-piece never bills less than what arrives."""
    marks: list[int] = []
    seen: list[int] = []
    meter = BodyMeter(seen.append, checkpoint=marks.append, checkpoint_bytes=25)
    meter.ahead(10)  # total 10 < 25: nothing due
    meter.sent(10)
    meter.ahead(20)  # would reach 30 >= 25: checkpoint 30 first
    assert marks == [30]
    meter.sent(20)  # the piece left: counted, no second checkpoint of the same total
    assert marks == [30] and meter.total == 30
    meter.ahead(10)
    meter.sent(4)  # the peer went away after 4 bytes of it
    meter.done()
    meter.done()  # idempotent: one final report whatever ends the body
    assert seen == [34]


def test_meter_without_checkpoints_never_calls_one() -> None:
    marks: list[int] = []
    seen: list[int] = []
    meter = BodyMeter(seen.append, checkpoint=marks.append)  # no interval set
    meter.ahead(10**9)
    meter.sent(10**9)
    meter.done()
    assert marks == [] and seen == [10**9]


async def test_a_cut_body_closes_its_source_at_once() -> None:
    """The source's clean-up (an open blob read) must not wait for the garbage collector."""
    closed: list[bool] = []

    async def source() -> AsyncIterator[bytes]:
        try:
            for _ in range(3):
                yield b"x"
        finally:
            closed.append(True)

    stream = count_body_bytes(source(), lambda _n: None)
    await stream.__anext__()
    await stream.aclose()
    assert closed == [True]
