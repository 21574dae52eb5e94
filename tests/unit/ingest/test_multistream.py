"""Multistream bz2 dumps: split at stream boundaries, each slice parses on its own, and the
slices together give exactly the records of the whole file."""

from __future__ import annotations

import bz2
import itertools
from pathlib import Path

import pytest

from feedserver.demo.dump import SITEINFO, demo_pages
from feedserver.errors import DumpError
from feedserver.formats.hashing import ENCODER
from feedserver.ingest.dump import read_dump
from feedserver.ingest.multistream import FOOTER, split_multistream

HEADER = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
          'xml:lang="en">\n' + SITEINFO)


def write_multistream(path: Path, pages: int, per_stream: int = 25) -> Path:
    """Like Wikimedia's multistream dumps: header stream, page streams, footer stream."""
    texts = list(demo_pages(pages))
    streams = [bz2.compress(HEADER.encode())]
    for i in range(0, len(texts), per_stream):
        streams.append(bz2.compress("".join(texts[i:i + per_stream]).encode()))
    streams.append(bz2.compress(FOOTER))
    path.write_bytes(b"".join(streams))
    return path


def encoded(path: Path, **kwargs: object) -> list[bytes]:
    return [ENCODER.encode(r) for r in read_dump(path, **kwargs)[1]]  # type: ignore[arg-type]


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_slices_give_the_records_of_the_whole_file(tmp_path: Path, parts: int) -> None:
    path = write_multistream(tmp_path / "multistream.xml.bz2", 200)
    whole = encoded(path)
    slices = split_multistream(path, parts)
    assert 2 <= len(slices) <= parts
    assert slices[0].start == 0 and slices[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in itertools.pairwise(slices))
    assert slices[0].prefix == b"" and slices[-1].suffix == b""
    assert all(s.prefix.rstrip().endswith(b"</siteinfo>") for s in slices[1:])
    pieces = [line for piece in slices for line in encoded(path, part=piece)]
    assert pieces == whole and len(whole) > 200


def test_pages_in_the_first_stream_too(tmp_path: Path) -> None:
    """A first stream holding pages after siteinfo still gives the header before <page>."""
    texts = list(demo_pages(60))
    path = tmp_path / "mixed.xml.bz2"
    path.write_bytes(bz2.compress((HEADER + "".join(texts[:10])).encode())
                     + b"".join(bz2.compress("".join(texts[i:i + 10]).encode())
                                for i in range(10, len(texts), 10))
                     + bz2.compress(FOOTER))
    slices = split_multistream(path, 2)
    assert len(slices) == 2
    assert [x for s in slices for x in encoded(path, part=s)] == encoded(path)


def test_single_stream_and_non_bz2_files_are_not_split(tmp_path: Path) -> None:
    single = tmp_path / "single.xml.bz2"
    single.write_bytes(bz2.compress((HEADER + "".join(demo_pages(50))).encode() + FOOTER))
    assert split_multistream(single, 4) == []
    plain = tmp_path / "plain.xml"
    plain.write_bytes(bz2.decompress(single.read_bytes()))
    assert split_multistream(plain, 4) == []
    assert split_multistream(single, 1) == []


def test_streams_that_cut_pages_are_not_split_there(tmp_path: Path) -> None:
    """pbzip2-style files: streams at arbitrary byte offsets are no page boundaries."""
    data = (HEADER + "".join(demo_pages(100))).encode() + FOOTER
    path = tmp_path / "pbzip2.xml.bz2"
    step = len(data) // 6 + 7  # lands inside pages
    path.write_bytes(b"".join(bz2.compress(data[i:i + step]) for i in range(0, len(data), step)))
    assert encoded(path)  # still one valid dump
    assert split_multistream(path, 3) == []


def test_truncated_slice_fails_with_dump_error(tmp_path: Path) -> None:
    path = write_multistream(tmp_path / "multistream.xml.bz2", 100)
    slices = split_multistream(path, 2)
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(path.read_bytes()[: slices[1].start + 200])
    with pytest.raises(DumpError, match="truncated"):
        encoded(cut, part=slices[1])
