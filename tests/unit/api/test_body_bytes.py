"""Only the body bytes the server took count, whatever ends the body."""

from __future__ import annotations

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
