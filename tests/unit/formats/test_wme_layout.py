"""WME downloads assembled from stored parts: one valid tar.gz, checksums known at build time,
byte ranges served from the parts without recompressing."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.formats.checksums import checksum_file
from feedserver.formats.wme_layout import (
    PartReader,
    SnapshotArchiveBuilder,
    archive_checksums,
    archive_size,
    chunk_archive,
    plan_range,
    read_range,
    snapshot_archive,
    snapshot_archive_size,
)
from feedserver.formats.wme_tar import TarGzWriter, snapshot_entry_name

ID = "elwikivoyage_namespace_0"


def chunked(lines: list[bytes], size: int) -> list[bytes]:
    """NDJSON chunks cut like ChunkWriter's: roll once a chunk reaches ``size``."""
    chunks, current = [], bytearray()
    for line in lines:
        current += line + b"\n"
        if len(current) >= size:
            chunks.append(bytes(current))
            current.clear()
    if current:
        chunks.append(bytes(current))
    return chunks


def blocks(data: bytes, size: int = 65536) -> Iterable[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def build_parts(tmp: Path, chunks: list[bytes]) -> tuple[SnapshotArchiveBuilder, list[Any],
                                                           PartReader]:
    builder = SnapshotArchiveBuilder(ID)
    recorded = []
    for k, data in enumerate(chunks):
        with (tmp / f"part_{k}.gz").open("wb") as out:
            recorded.append(builder.add_chunk(blocks(data), out, data_size=len(data)))

    def read_part(index: int, start: int, stop: int) -> Iterable[bytes]:
        with (tmp / f"part_{index}.gz").open("rb") as fh:
            fh.seek(start)
            yield fh.read(stop - start)

    return builder, recorded, read_part


def test_snapshot_archive_is_the_parts_back_to_back(article_lines: list[bytes], tmp_path: Path,
                                                    sdk_read_all: Callable[[bytes], list[Any]]
                                                    ) -> None:
    chunks = chunked(article_lines, 1_500_000)
    builder, recorded, read_part = build_parts(tmp_path, chunks)
    whole = builder.finish()
    segments = snapshot_archive(ID, builder.parts)
    data = b"".join(read_range(segments, read_part))
    # The checksums taken while writing the parts are those of the assembled download.
    assert whole.size == len(data) == archive_size(segments) == snapshot_archive_size(
        builder.parts)
    assert whole.sha256 == hashlib.sha256(data).hexdigest()
    assert whole.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert archive_checksums(segments, read_part) == whole
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
    assert names == [snapshot_entry_name(ID, k) for k in range(len(chunks))]
    assert sdk_read_all(data) == [json.loads(line) for line in article_lines]
    for k, chunk in enumerate(recorded):
        assert checksum_file(tmp_path / f"part_{k}.gz", md5=True) == chunk.part.checksums


def test_assembled_archive_equals_the_streaming_writers(article_lines: list[bytes],
                                                        tmp_path: Path) -> None:
    # The same entries written in one go by TarGzWriter: byte for byte the same file, so the
    # two ways of producing a WME archive can never disagree.
    chunks = chunked(article_lines[:600], 400_000)
    builder, _, read_part = build_parts(tmp_path, chunks)
    assembled = b"".join(read_range(snapshot_archive(ID, builder.parts), read_part))
    out = io.BytesIO()
    writer = TarGzWriter(out, entry_name=lambda n: snapshot_entry_name(ID, n),
                         entry_limit=max(len(c) for c in chunks))
    for data in chunks:
        writer.add_lines(data.splitlines())
        writer.cut()  # the same entry borders as the chunks
    writer.close()
    assert out.getvalue() == assembled


def test_chunk_archive_holds_one_entry_and_its_checksum_is_known(
        article_lines: list[bytes], tmp_path: Path,
        sdk_read_all: Callable[[bytes], list[Any]]) -> None:
    chunks = chunked(article_lines, 2_000_000)
    _, recorded, read_part = build_parts(tmp_path, chunks)
    k = 1
    segments = chunk_archive(k, recorded[k].part)

    def only_k(_: int, start: int, stop: int) -> Iterable[bytes]:
        return read_part(k, start, stop)

    data = b"".join(read_range(segments, only_k))
    # WME's chunk ``version`` is this MD5.
    assert hashlib.md5(data, usedforsecurity=False).hexdigest() == recorded[k].archive.md5
    assert len(data) == recorded[k].archive.size
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == [f"chunk_{k}.ndjson"]
    assert sdk_read_all(data) == [json.loads(line) for line in chunks[k].splitlines()]


def test_empty_snapshot_archive_is_valid() -> None:
    builder = SnapshotArchiveBuilder(ID)
    segments = snapshot_archive(ID, builder.parts)
    data = b"".join(read_range(segments, lambda *_: iter(())))
    assert builder.finish().size == len(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == []


@settings(max_examples=80, deadline=None)
@given(start=st.integers(min_value=0, max_value=30_000),
       length=st.integers(min_value=0, max_value=30_000))
def test_any_range_reads_the_same_bytes_as_the_whole(start: int, length: int) -> None:
    chunks = [b'{"a":"' + bytes([97 + k]) * (3000 * k + 10) + b'"}\n' for k in range(4)]
    parts: dict[int, bytes] = {}
    builder = SnapshotArchiveBuilder(ID, level=1)
    for k, data in enumerate(chunks):
        out = io.BytesIO()
        builder.add_chunk([data], out, data_size=len(data))
        parts[k] = out.getvalue()
    segments = snapshot_archive(ID, builder.parts)

    def read_part(index: int, a: int, b: int) -> Iterable[bytes]:
        assert 0 <= a < b <= len(parts[index])  # only the bytes needed are asked for
        yield parts[index][a:b]

    whole = b"".join(read_range(segments, read_part))
    got = b"".join(read_range(segments, read_part, start, start + length))
    assert got == whole[start : start + length]
    pieces = plan_range(segments, start, start + length)
    assert sum(p.stop - p.start for p in pieces) == len(got)


def test_archive_is_one_gzip_member(article_lines: list[bytes], tmp_path: Path) -> None:
    """The assembled download is ONE gzip member, as WME's (pgzip) are: readers that stop
    after the first member read it all. Python's ``tarfile`` in stream mode (``r|gz``, the
    usual way to read an HTTP body as it arrives) is one of them; Rust's ``GzDecoder``
    another. A single-member decode (zlib, wbits 31) ends exactly at the end of the file."""
    chunks = chunked(article_lines, 1_500_000)
    builder, _, read_part = build_parts(tmp_path, chunks)
    builder.finish()
    data = b"".join(read_range(snapshot_archive(ID, builder.parts), read_part))
    one = zlib.decompressobj(wbits=31)
    tar_stream = one.decompress(data)
    assert one.eof and one.unused_data == b""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as tar:
        got = b"".join(tar.extractfile(m).read() for m in tar)  # type: ignore[union-attr]
    assert got == b"".join(chunks)
    assert tar_stream.endswith(bytes(1024))
