"""Stored parts stream in order with read-ahead, and every read opened ahead is released."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from pathlib import Path

import pytest

from feedserver.api.blob_stream import BATCH_BYTES, stream_segments
from feedserver.api.ranges import Segment
from feedserver.errors import BlobNotFound, IntegrityError
from feedserver.storage.blobs import READ_BLOCK, FilesystemBlobStore

MiB = 1024 * 1024


class Recording(FilesystemBlobStore):
    """The filesystem store, noting which reads were opened and which were closed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[str] = []
        self.closed: list[str] = []

    def open_range(self, key: str, start: int = 0,
                   end: int | None = None) -> Generator[bytes, None, None]:
        inner = super().open_range(key, start, end)
        self.opened.append(key)
        return self._noting(key, inner)

    def _noting(self, key: str, inner: Generator[bytes, None, None]
                ) -> Generator[bytes, None, None]:
        try:
            yield from inner
        finally:
            inner.close()
            self.closed.append(key)


def _store(tmp_path: Path, sizes: dict[str, int]) -> tuple[Recording, dict[str, bytes]]:
    store = Recording(tmp_path)
    data = {key: bytes([i + 1]) * size for i, (key, size) in enumerate(sizes.items())}
    for key, body in data.items():
        store.put_bytes(key, body)
    return store, data


async def test_parts_and_literals_arrive_in_order_in_store_blocks(tmp_path: Path) -> None:
    # Larger than one batch, so the second part is opened while the first is still read.
    store, data = _store(tmp_path, {"a": BATCH_BYTES + 3 * MiB + 5, "b": 2 * MiB, "c": 7})
    segments = [Segment("a", 10, len(data["a"])), Segment("", 0, 3, b"hdr"),
                Segment("b", 0, 2 * MiB), Segment("c", 2, 7)]
    blocks = [block async for block in stream_segments(store, segments)]
    assert b"".join(blocks) == data["a"][10:] + b"hdr" + data["b"] + data["c"][2:]
    # never joined: each block is one the store gave (or a literal)
    assert max(map(len, blocks)) <= READ_BLOCK
    assert store.opened == ["a", "b", "c"] and sorted(store.closed) == ["a", "b", "c"]


async def test_a_short_part_aborts_the_body(tmp_path: Path) -> None:
    store, _ = _store(tmp_path, {"a": 100})
    with pytest.raises(IntegrityError):
        async for _ in stream_segments(store, [Segment("a", 0, 200)]):
            pass


async def test_a_cut_body_releases_the_part_opened_ahead(tmp_path: Path) -> None:
    # A first part of one block: its first read is all of it, so the second is opened at once.
    store, _ = _store(tmp_path, {"a": 1000, "b": 3 * MiB})
    body = stream_segments(store, [Segment("a", 0, 1000), Segment("b", 0, 3 * MiB)])
    await body.__anext__()
    await body.aclose()  # the client went away during the first part
    for _ in range(500):  # the reads still in worker threads finish, then are closed
        if len(store.closed) == 2:
            break
        await asyncio.sleep(0.01)
    assert store.opened == ["a", "b"] and sorted(store.closed) == ["a", "b"]


async def test_a_missing_later_part_fails_when_it_is_reached(tmp_path: Path) -> None:
    # The first part's bytes still go out (headers are sent by then); the missing one ends
    # the body with the store's own error, as without the read ahead.
    store, data = _store(tmp_path, {"a": 1000})
    got = b""
    with pytest.raises(BlobNotFound):
        async for block in stream_segments(store, [Segment("a", 0, 1000),
                                                   Segment("gone", 0, 10)]):
            got += block
    assert got == data["a"]
