"""Stored parts stream in order with read-ahead, and every read opened ahead is released."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from pathlib import Path

import pytest

from feedserver.api.blob_stream import BATCH_BYTES, Ahead, open_ahead, stream_segments
from feedserver.api.ranges import Segment
from feedserver.errors import BlobNotFound, IntegrityError
from feedserver.storage.blobs import READ_BLOCK, FilesystemBlobStore
from tests.fixtures.blob_reads import noting_close

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
        return noting_close(key, inner, self.closed)


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


async def _all_closed(store: Recording, count: int) -> None:
    for _ in range(500):  # reads still in worker threads finish, then are closed
        if len(store.closed) == count:
            return
        await asyncio.sleep(0.01)


async def test_a_part_opened_ahead_is_used_not_opened_again(tmp_path: Path) -> None:
    # The download opened its first part while it read the pointer: the body starts from
    # that open (one GET of the part, not two) and serves the same bytes.
    store, data = _store(tmp_path, {"a": 2 * MiB + 3, "b": 5})
    segments = [Segment("", 0, 3, b"hdr"), Segment("a", 7, 2 * MiB + 3), Segment("b", 0, 5)]
    ahead = open_ahead(store, segments)
    assert ahead is not None and ahead.seg == segments[1]
    got = b"".join([block async for block in stream_segments(store, segments, ahead)])
    assert got == b"hdr" + data["a"][7:] + data["b"]
    await _all_closed(store, 2)
    assert store.opened == ["a", "b"] and sorted(store.closed) == ["a", "b"]


async def test_a_part_opened_ahead_for_another_body_is_closed(tmp_path: Path) -> None:
    # The pointer disagreed after all (another version, another range): the body serves
    # its own segments, and the open made ahead is released, not leaked.
    store, data = _store(tmp_path, {"old": 3 * MiB, "new": 1000})
    ahead = Ahead(store, Segment("old", 0, 3 * MiB))
    got = b"".join([block async for block in
                    stream_segments(store, [Segment("new", 10, 1000)], ahead)])
    assert got == data["new"][10:]
    await _all_closed(store, 2)
    assert sorted(store.opened) == ["new", "old"] and sorted(store.closed) == ["new", "old"]


async def test_a_part_opened_ahead_is_closed_when_dropped_or_the_body_never_reaches_it(
        tmp_path: Path) -> None:
    store, _ = _store(tmp_path, {"a": 3 * MiB, "b": 10})
    Ahead(store, Segment("a", 0, 3 * MiB)).close()  # answered without a body (304, 416..)
    ahead = Ahead(store, Segment("b", 0, 10))
    body = stream_segments(store, [Segment("", 0, 2, b"hd"), Segment("b", 0, 10)], ahead)
    assert await body.__anext__() == b"hd"
    await body.aclose()  # cut before the stored part
    await _all_closed(store, 2)
    assert sorted(store.opened) == ["a", "b"] and sorted(store.closed) == ["a", "b"]


async def test_a_failed_open_ahead_is_made_again_by_the_body(tmp_path: Path) -> None:
    # Opened ahead before the object existed (the hint raced a publish): the body opens it
    # again, so it fails or not exactly as it would have without the open ahead.
    store, _ = _store(tmp_path, {})
    ahead = Ahead(store, Segment("late", 0, 4))
    with pytest.raises(BlobNotFound):
        await asyncio.shield(ahead.opened)
    store.put_bytes("late", b"data")
    got = b"".join([block async for block in
                    stream_segments(store, [Segment("late", 0, 4)], ahead)])
    assert got == b"data" and store.opened == ["late"] and store.closed == ["late"]
