"""Where each byte of a WME download comes from: rebuilt headers, stored parts, the tail.

A WME download (``chunk_<k>.tar.gz`` or ``<id>.tar.gz``) is never stored whole. It is a list
of ``Segment``s: literal bytes rebuilt on demand (the gzip header, each tar header as a stored
block, the end-of-archive block and gzip trailer) or a reference to a stored part
(``wme_tar.TarGzPart``). From the
segments a server knows the download's size, serves any byte range by reading only the parts
it overlaps (``plan_range`` / ``read_range``), and a build computes the download's MD5 and
SHA-256 without writing it (``archive_checksums``, ``SnapshotArchiveBuilder``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

import msgspec

from feedserver.errors import IntegrityError
from feedserver.formats.checksums import Checksums, Digester
from feedserver.formats.gzip_pieces import HEADER
from feedserver.formats.wme_tar import (
    DEFAULT_LEVEL,
    ENTRY_HEADER_SIZE,
    TAIL_SIZE,
    TarGzPart,
    archive_tail,
    chunk_entry_name,
    entry_header,
    snapshot_entry_name,
    write_part,
)

# read_part(part index, start, stop): the stored part's bytes [start, stop), in blocks.
PartReader = Callable[[int, int, int], Iterable[bytes]]


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    """``size`` bytes at ``offset`` of a download: ``data`` itself, or stored part ``part``."""

    offset: int
    size: int
    data: bytes = b""
    part: int = -1


class RangePiece(msgspec.Struct, frozen=True, kw_only=True):
    """Bytes [start, stop) of one segment, relative to the segment."""

    segment: Segment
    start: int
    stop: int


def _layout(entries: Sequence[tuple[str, TarGzPart]]) -> list[Segment]:
    segments = [Segment(offset=0, size=len(HEADER), data=HEADER)]
    offset = len(HEADER)
    for index, (name, part) in enumerate(entries):
        head = entry_header(name, part.data_size)
        segments.append(Segment(offset=offset, size=len(head), data=head))
        offset += len(head)
        segments.append(Segment(offset=offset, size=part.checksums.size, part=index))
        offset += part.checksums.size
    tail = archive_tail(entries)
    segments.append(Segment(offset=offset, size=len(tail), data=tail))
    return segments


def chunk_archive(index: int, part: TarGzPart) -> list[Segment]:
    """``chunk_<index>.tar.gz``: one entry ``chunk_<index>.ndjson``; its part is number 0."""
    return _layout([(chunk_entry_name(index), part)])


def snapshot_archive(identifier: str, parts: Sequence[TarGzPart]) -> list[Segment]:
    """``<identifier>.tar.gz``: entry ``<identifier>_<n>.ndjson`` for part n, in order."""
    return _layout([(snapshot_entry_name(identifier, n), part) for n, part in enumerate(parts)])


def archive_size(segments: Sequence[Segment]) -> int:
    last = segments[-1]
    return last.offset + last.size


def snapshot_archive_size(parts: Sequence[TarGzPart]) -> int:
    """Size of a snapshot (or chunk) archive from its parts alone."""
    return (len(HEADER) + sum(ENTRY_HEADER_SIZE + part.checksums.size for part in parts)
            + TAIL_SIZE)


def plan_range(segments: Sequence[Segment], start: int, stop: int) -> list[RangePiece]:
    """The pieces of segments covering download bytes [start, stop) (clamped to the size)."""
    stop = min(stop, archive_size(segments))
    pieces: list[RangePiece] = []
    if start >= stop:
        return pieces
    for segment in segments:
        end = segment.offset + segment.size
        if end <= start or segment.offset >= stop or segment.size == 0:
            continue
        pieces.append(RangePiece(segment=segment, start=max(start, segment.offset) - segment.offset,
                                 stop=min(stop, end) - segment.offset))
    return pieces


def read_range(segments: Sequence[Segment], read_part: PartReader, start: int = 0,
               stop: int | None = None) -> Iterator[bytes]:
    """The download's bytes [start, stop) (default: all), reading only the parts needed."""
    end = archive_size(segments) if stop is None else stop
    for piece in plan_range(segments, start, end):
        if piece.segment.part < 0:
            yield piece.segment.data[piece.start : piece.stop]
        else:
            yield from read_part(piece.segment.part, piece.start, piece.stop)


def archive_checksums(segments: Sequence[Segment], read_part: PartReader) -> Checksums:
    """MD5 (WME ``version``), SHA-256 and size of a download, streamed from its parts."""
    digest = Digester(md5=True)
    for block in read_range(segments, read_part):
        digest.update(block)
    return digest.result()


class WmeChunk(msgspec.Struct, frozen=True, kw_only=True):
    """What a build records per chunk: its stored part and its ``chunk_<k>.tar.gz``."""

    part: TarGzPart
    archive: Checksums


class SnapshotArchiveBuilder:
    """Write a snapshot's parts in chunk order and take, on the way, the checksums of every
    ``chunk_<k>.tar.gz`` and of the whole ``<identifier>.tar.gz`` (nothing is read back)."""

    def __init__(self, identifier: str, *, level: int = DEFAULT_LEVEL) -> None:
        self.identifier = identifier
        self.level = level
        self.parts: list[TarGzPart] = []
        self._whole = Digester(md5=True)
        self._whole.update(HEADER)
        self._done = False

    def _start(self, data_size: int) -> tuple[int, Digester]:
        """Open chunk ``len(parts)``: its archive's digest, both headers hashed."""
        if self._done:
            raise ValueError("snapshot archive already finished")
        index = len(self.parts)
        chunk = Digester(md5=True)
        chunk.update(HEADER)
        chunk.update(entry_header(chunk_entry_name(index), data_size))
        self._whole.update(entry_header(snapshot_entry_name(self.identifier, index), data_size))
        return index, chunk

    def _end(self, index: int, chunk: Digester, part: TarGzPart) -> WmeChunk:
        chunk.update(archive_tail([(chunk_entry_name(index), part)]))
        self.parts.append(part)
        return WmeChunk(part=part, archive=chunk.result())

    def add_chunk(self, blocks: Iterable[bytes], out: IO[bytes], *,
                  data_size: int) -> WmeChunk:
        """Deflate chunk ``len(parts)``'s NDJSON ``blocks`` (``data_size`` bytes) to ``out``."""
        index, chunk = self._start(data_size)
        part = write_part(blocks, out, data_size=data_size, level=self.level,
                          also=(chunk, self._whole))
        return self._end(index, chunk, part)

    def add_part(self, part: TarGzPart, blocks: Iterable[bytes]) -> WmeChunk:
        """Take chunk ``len(parts)``'s part already written elsewhere (e.g. by ``write_part``
        in another process): its stored ``blocks`` are hashed, not deflated again."""
        index, chunk = self._start(part.data_size)
        size = 0
        for block in blocks:
            chunk.update(block)
            self._whole.update(block)
            size += len(block)
        if size != part.checksums.size:
            raise IntegrityError(f"part {index} holds {size} bytes, recorded "
                                 f"{part.checksums.size}")
        return self._end(index, chunk, part)

    def finish(self) -> Checksums:
        """Checksums of the whole snapshot archive."""
        if not self._done:
            self._whole.update(archive_tail(
                [(snapshot_entry_name(self.identifier, k), p) for k, p in enumerate(self.parts)]))
            self._done = True
        return self._whole.result()
