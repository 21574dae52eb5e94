"""WME tar.gz writer: read by the official SDK, gzip, tarfile and GNU tar; deterministic;
entries cut like WME's (before passing the limit)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.errors import IntegrityError
from feedserver.formats.checksums import checksum_file, verify_file
from feedserver.formats.wme_tar import (
    BLOCK,
    ENTRY_LIMIT,
    TarGzArchive,
    TarGzWriter,
    chunk_entry_name,
    snapshot_entry_name,
    write_part,
)

ID = "elwikivoyage_namespace_0"


def build(lines: list[bytes], *, limit: int = ENTRY_LIMIT, level: int = 6,
          spool: Path | None = None) -> tuple[bytes, TarGzArchive]:
    out = io.BytesIO()
    writer = TarGzWriter(out, entry_name=lambda n: snapshot_entry_name(ID, n), entry_limit=limit,
                         level=level, spool_dir=spool)
    writer.add_lines(lines)
    archive = writer.close()
    return out.getvalue(), archive


def members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for info in tar:
            handle = tar.extractfile(info)
            assert handle is not None
            out.append((info, handle.read()))
    return out


def test_sdk_reads_exactly_the_lines(article_lines: list[bytes],
                                     sdk_read_all: Callable[[bytes], list[dict[str, Any]]]
                                     ) -> None:
    # A small limit gives several entries, so the SDK crosses entry (and gzip member) borders.
    data, archive = build(article_lines, limit=2_000_000)
    assert len(archive.entries) > 3
    assert sdk_read_all(data) == [json.loads(line) for line in article_lines]


def test_gzip_and_tarfile_read_it_with_fixed_metadata(article_lines: list[bytes]) -> None:
    data, archive = build(article_lines, limit=3_000_000)
    assert gzip.decompress(data)[-2 * BLOCK:] == bytes(2 * BLOCK)
    got = members(data)
    assert [info.name for info, _ in got] == [snapshot_entry_name(ID, n) for n in range(len(got))]
    for info, _ in got:
        assert (info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname) == (
            0, 0o644, 0, 0, "", "")
        assert info.isfile()
    assert b"".join(body for _, body in got) == b"".join(line + b"\n" for line in article_lines)
    assert [e.part.data_size for e in archive.entries] == [info.size for info, _ in got]
    assert sum(e.part.lines for e in archive.entries) == len(article_lines)


def test_gzip_header_has_no_time_or_name(tmp_path: Path) -> None:
    data, _ = build([b'{"a":1}'], spool=tmp_path)
    # magic, deflate, FLG=0 (no name/comment/extra), MTIME=0, XFL=0, OS=255
    assert data[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def test_bytes_identical_across_runs_and_checksums_match(article_lines: list[bytes],
                                                         tmp_path: Path) -> None:
    first, info = build(article_lines, limit=4_000_000)
    second, again = build(article_lines, limit=4_000_000, spool=tmp_path)
    assert first == second and info == again
    assert info.checksums.size == len(first)
    assert info.checksums.sha256 == hashlib.sha256(first).hexdigest()
    assert info.checksums.md5 == hashlib.md5(first, usedforsecurity=False).hexdigest()


def test_gnu_tar_lists_it(article_lines: list[bytes], tmp_path: Path) -> None:
    if shutil.which("tar") is None:
        pytest.skip("no tar binary")
    data, archive = build(article_lines[:200], limit=500_000)
    path = tmp_path / f"{ID}.tar.gz"
    path.write_bytes(data)
    listed = subprocess.run(["tar", "-tzf", str(path)], check=True, capture_output=True,
                            text=True, timeout=60).stdout.split()
    assert listed == [e.name for e in archive.entries]


def test_entries_are_cut_before_they_pass_the_limit() -> None:
    limit = 100
    line = b"x" * 19  # 20 bytes with its newline
    data, archive = build([line] * 12, limit=limit)
    # Five lines fill an entry exactly (100 bytes, not past the limit); the sixth starts a new one.
    assert [e.part.data_size for e in archive.entries] == [100, 100, 40]
    assert [info.size for info, _ in members(data)] == [100, 100, 40]


def test_a_line_longer_than_the_limit_gets_an_entry_of_its_own() -> None:
    big = b"y" * 250
    _, archive = build([b"a", big, b"b"], limit=100)
    assert [e.part.data_size for e in archive.entries] == [2, 251, 2]


def test_empty_archive_is_a_valid_empty_tar() -> None:
    data, archive = build([])
    assert archive.entries == [] and members(data) == []


@pytest.mark.parametrize("line", [b"", b'{"a":\n1}', b"\n"])
def test_empty_lines_and_inner_newlines_are_refused(line: bytes) -> None:
    writer = TarGzWriter(io.BytesIO(), entry_name=chunk_entry_name)
    with pytest.raises(ValueError, match="NDJSON line"):
        writer.add(line)
    writer.abort()


# Any JSON string of any Unicode text, including separators that are not "\n" (U+2028, "\r")
# which JSON escapes or keeps; lines never contain a raw newline once encoded.
_records = st.lists(st.text(min_size=0, max_size=300), min_size=0, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_records, limit=st.integers(min_value=1, max_value=2000))
def test_roundtrip_any_unicode(texts: list[str], limit: int) -> None:
    lines = [json.dumps({"t": t}, ensure_ascii=False).encode() for t in texts]
    data, archive = build(lines, limit=limit)
    got = members(data)
    assert b"".join(body for _, body in got) == b"".join(line + b"\n" for line in lines)
    assert len(archive.entries) == len(got)
    for _, body in got:
        # An entry passes the limit only when it is one single longer line.
        assert len(body) <= limit or body.count(b"\n") == 1


@settings(max_examples=30, deadline=None)
@given(lines=st.lists(st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b),
                      max_size=30),
       cuts=st.lists(st.integers(min_value=1, max_value=500), max_size=10))
def test_part_bytes_do_not_depend_on_how_input_is_cut(lines: list[bytes], cuts: list[int]
                                                      ) -> None:
    data = b"".join(line + b"\n" for line in lines)
    whole, pieces = io.BytesIO(), io.BytesIO()
    one = write_part([data], whole)
    blocks, start = [], 0
    for cut in cuts:
        blocks.append(data[start : start + cut])
        start += cut
    blocks.append(data[start:])
    two = write_part(blocks, pieces)
    assert whole.getvalue() == pieces.getvalue() and one == two
    assert one.lines == len(lines) and one.data_size == len(data)


def test_part_with_a_wrong_promised_size_is_refused() -> None:
    with pytest.raises(IntegrityError, match="header says"):
        write_part([b'{"a":1}\n'], io.BytesIO(), data_size=7)


def test_a_flipped_byte_is_caught(article_lines: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "a.tar.gz"
    data, archive = build(article_lines[:50])
    path.write_bytes(data)
    verify_file(path, archive.checksums)
    assert checksum_file(path, md5=True) == archive.checksums
    broken = bytearray(data)
    broken[len(broken) // 2] ^= 0x01
    path.write_bytes(bytes(broken))
    with pytest.raises(IntegrityError, match="does not match its checksum"):
        verify_file(path, archive.checksums)
    # Even without the manifest, gzip's CRC-32 over the whole stream (or the deflate decoder)
    # refuses it, for a reader that reads to the end (gzip -t, gzip.decompress). A tar reader
    # stops at the end-of-archive blocks, before the trailer: compare the checksums.
    with pytest.raises((OSError, EOFError, zlib.error, gzip.BadGzipFile)):
        gzip.decompress(bytes(broken))
