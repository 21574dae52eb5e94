"""One contract for every ``BlobStore``: the filesystem store (``tests/unit/storage/blobs``)
and S3 on a real moto_server (``tests/integration/storage``).

A test module joins by defining a ``store`` fixture and importing everything from here; every
test below then runs against its backend unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest

from feedserver.config import Settings
from feedserver.errors import BlobNotFound, InvalidIdentifier, StorageError
from feedserver.formats.checksums import checksum_file
from feedserver.storage.blobs import BlobStore, open_blob_store

MiB = 1024 * 1024
# moto (like S3) requires parts of at least 5 MiB except the last one.
SMALL_MULTIPART = {"s3_multipart_threshold": 5 * MiB, "s3_multipart_chunksize": 5 * MiB}


def open_store(base: Settings) -> BlobStore:
    """The store ``base`` names, with multipart uploads from 5 MiB (exercised by a test)."""
    blobs = open_blob_store(msgspec.structs.replace(base, **SMALL_MULTIPART))
    assert isinstance(blobs, BlobStore)
    return blobs


def _read(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open_range(key, start, end))


# --- put / get / stat ------------------------------------------------------------------------


def test_put_bytes_round_trip(store: BlobStore) -> None:
    info = store.put_bytes("a/b/c.json", b'{"x": 1}')
    assert info.key == "a/b/c.json"
    assert info.size == 8
    assert info.etag
    assert store.get_bytes("a/b/c.json") == b'{"x": 1}'
    assert store.exists("a/b/c.json")


def test_put_bytes_replaces_whole_object(store: BlobStore) -> None:
    store.put_bytes("k", b"a much longer first version")
    second = store.put_bytes("k", b"short")
    assert store.get_bytes("k") == b"short"
    assert store.stat("k").size == second.size == 5


def test_put_empty_object(store: BlobStore) -> None:
    assert store.put_bytes("empty", b"").size == 0
    assert store.get_bytes("empty") == b""
    assert _read(store, "empty") == b""


def test_put_file_round_trip(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "chunk.bin"
    src.write_bytes(os.urandom(100_000))
    info = store.put_file("snap/chunk_0", src)
    assert info.size == 100_000
    assert store.get_bytes("snap/chunk_0") == src.read_bytes()


def test_stat_reports_size_etag_time(store: BlobStore) -> None:
    first = store.put_bytes("s", b"12345")
    info = store.stat("s")
    assert (info.key, info.size, info.etag) == ("s", 5, first.etag)
    assert info.last_modified > 0
    assert store.put_bytes("s", b"123456").etag != first.etag


def test_missing_keys(store: BlobStore) -> None:
    assert not store.exists("nope/x")
    with pytest.raises(BlobNotFound):
        store.get_bytes("nope/x")
    with pytest.raises(BlobNotFound):
        store.stat("nope/x")
    with pytest.raises(BlobNotFound):
        store.open_range("nope/x")
    with pytest.raises(BlobNotFound):
        store.open_range("nope/x", 5, 5)


# --- ranges ----------------------------------------------------------------------------------

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, DATA),
        (0, 1, DATA[:1]),
        (1, 10, DATA[1:10]),
        (len(DATA) - 1, None, DATA[-1:]),
        (len(DATA) - 1, len(DATA), DATA[-1:]),
        (100, len(DATA) + 500, DATA[100:]),  # end past the end: clipped
        (len(DATA), None, b""),  # start at the end: nothing
        (len(DATA) + 10, None, b""),  # start past the end: nothing
        (7, 7, b""),  # empty range
    ],
)
def test_open_range(store: BlobStore, start: int, end: int | None, expected: bytes) -> None:
    store.put_bytes("r", DATA)
    assert _read(store, "r", start, end) == expected


# --- list / delete ---------------------------------------------------------------------------


def test_list_is_sorted_and_prefixed(store: BlobStore) -> None:
    for key in ["b/2", "a/1", "b/1", "b/10/x", "bb/1", "c"]:
        store.put_bytes(key, b".")
    assert list(store.list("")) == ["a/1", "b/1", "b/10/x", "b/2", "bb/1", "c"]
    assert list(store.list("b/")) == ["b/1", "b/10/x", "b/2"]
    assert list(store.list("b/1")) == ["b/1", "b/10/x"]
    assert list(store.list("b")) == ["b/1", "b/10/x", "b/2", "bb/1"]
    assert list(store.list("zzz/")) == []


def test_delete(store: BlobStore) -> None:
    for key in ["d/1", "d/2", "d/3", "keep"]:
        store.put_bytes(key, b".")
    store.delete(["d/1", "d/2", "d/missing"])
    assert list(store.list("")) == ["d/3", "keep"]
    with pytest.raises(BlobNotFound):
        store.get_bytes("d/1")
    store.delete([])
    store.delete(iter(["d/3"]))
    assert list(store.list("d/")) == []


# --- hostile keys ----------------------------------------------------------------------------

HOSTILE = ["../x", "/abs", "", "a\x00b", "a/../b", "a//b", "a/", ".hidden", "a/./b", "a b"]


@pytest.mark.parametrize("key", HOSTILE)
def test_hostile_keys_rejected(store: BlobStore, key: str, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    calls: list[Callable[[], object]] = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_file(key, src),
        lambda: store.get_bytes(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.open_range(key),
        lambda: store.delete([key]),
        lambda: store.presign(key, 60),
        lambda: store.presign(key, 60, (0, 1)),
        lambda: store.local_path(key),
    ]
    for call in calls:
        with pytest.raises(InvalidIdentifier):
            call()
    assert list(store.list("")) == []


def test_hostile_list_prefix_rejected(store: BlobStore) -> None:
    with pytest.raises(InvalidIdentifier):
        list(store.list("../"))


def test_hostile_key_in_batch_deletes_nothing_it_should_not(store: BlobStore) -> None:
    store.put_bytes("safe", b".")
    with pytest.raises(InvalidIdentifier):
        store.delete(["../safe"])
    assert store.exists("safe")


# --- atomicity -------------------------------------------------------------------------------


def test_failed_upload_keeps_previous_object(store: BlobStore, tmp_path: Path) -> None:
    store.put_bytes("obj", b"old")
    with pytest.raises(StorageError):
        store.put_file("obj", tmp_path / "does-not-exist")
    assert store.get_bytes("obj") == b"old"
    assert list(store.list("")) == ["obj"]


def test_reader_sees_one_whole_version(store: BlobStore) -> None:
    store.put_bytes("v", b"A" * 5000)
    stream = store.open_range("v")
    store.put_bytes("v", b"B" * 3000)
    seen = b"".join(stream)
    assert seen in {b"A" * 5000, b"B" * 3000}
    assert store.get_bytes("v") == b"B" * 3000


def test_multipart_upload(store: BlobStore, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with big.open("wb") as fh:
        for i in range(12):
            fh.write(bytes([i]) + block[1:])
    info = store.put_file("snap/big", big)
    assert info.size == 12 * MiB
    digest = hashlib.sha256()
    for part in store.open_range("snap/big"):
        assert len(part) <= 2 * MiB  # streamed in blocks, never the whole object
        digest.update(part)
    assert digest.hexdigest() == checksum_file(big).sha256
    middle = 5 * MiB
    across_parts = block[-2:] + bytes([5]) + block[1:2]
    assert _read(store, "snap/big", middle - 2, middle + 2) == across_parts


# --- presigned URLs --------------------------------------------------------------------------


def test_presign(store: BlobStore) -> None:
    store.put_bytes("p/obj", b"direct download")
    url = store.presign("p/obj", 60)
    if url is None:  # the filesystem store has no direct URL; the API streams instead
        return
    resp = httpx.get(url, timeout=10.0)
    assert resp.status_code == 200
    assert resp.content == b"direct download"


def test_presign_bound_to_a_range(store: BlobStore) -> None:
    store.put_bytes("p/ranged", b"0123456789")
    url = store.presign("p/ranged", 60, (2, 6))
    if url is None:
        return
    # The range is signed: the URL is followed with exactly that Range header.
    resp = httpx.get(url, headers={"Range": "bytes=2-5"}, timeout=10.0)
    assert resp.status_code == 206
    assert resp.content == b"2345"


def test_local_path_is_the_object_or_none(store: BlobStore) -> None:
    store.put_bytes("p/local", b"zero copy")
    path = store.local_path("p/local")
    if path is None:  # S3: nothing on this machine; downloads are streamed
        return
    assert path.read_bytes() == b"zero copy"  # what sendfile would send
