"""Wikimedia Enterprise archives: byte-for-byte deterministic tar.gz of NDJSON lines.

WME serves a snapshot as ``<id>.tar.gz`` whose tar entries are ``<id>_<n>.ndjson``, each cut
before it passes 100,000,000 bytes uncompressed, and a chunk as ``chunk_<n>.tar.gz`` holding
one ``chunk_<n>.ndjson``; a chunk's ``version`` is the MD5 of its compressed bytes.

An archive here is ONE gzip member (``gzip_pieces``) whose deflate stream is laid out from
pieces: each tar entry's 512-byte header as a *stored* block (``entry_header``: bytes fixed by
the specifications, rebuildable at any time), then the entry's data plus the zero padding to a
512-byte boundary, deflated by zlib-ng on its own and ended with a sync flush (a *part*); the
two zero blocks of end-of-archive close the stream as a final stored block, and the gzip
trailer follows (``archive_tail``: its CRC-32 combined from the parts' recorded CRCs). So:

    chunk_<k>.tar.gz = HEADER + entry_header("chunk_<k>.ndjson") + part_k + tail
    <id>.tar.gz      = HEADER + entry_header("<id>_0.ndjson") + part_0 + ... + part_n + tail

The parts (the only big bytes) are compressed once and stored once; everything else is small
and rebuilt on demand (``wme_layout``). Fixed tar fields: mode 0644, uid/gid 0, no user or
group names, mtime 0, ustar format.

A tar header needs the entry's size first. ``write_part`` takes it from the caller (a sealed
chunk knows its uncompressed size); ``TarGzWriter`` takes bare lines and spools each entry's
*compressed* part to a temporary file until the entry is cut, then writes header and part.
Memory stays flat either way: at most one 1 MiB block of input is held.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

import msgspec

from feedserver.errors import IntegrityError
from feedserver.formats.checksums import Checksums, Digester, HashingWriter
from feedserver.formats.gzip_pieces import (
    HEADER,
    TRAILER_SIZE,
    DeflatePiece,
    crc32,
    crc32_combine,
    stored_blocks,
    stored_blocks_size,
    trailer,
)

ENTRY_LIMIT = 100_000_000  # WME cuts an entry before it passes this many uncompressed bytes
DEFAULT_LEVEL = 6  # gzip's (and WME's pgzip's) default; zlib-ng runs it ~3x faster than zlib
BLOCK = tarfile.BLOCKSIZE
_END_BLOCKS = bytes(2 * BLOCK)
END_OF_ARCHIVE = stored_blocks(_END_BLOCKS, final=True)  # the deflate stream's final block
ENTRY_HEADER_SIZE = stored_blocks_size(BLOCK)
TAIL_SIZE = len(END_OF_ARCHIVE) + TRAILER_SIZE
_FLUSH_AT = 1 << 20
_NAME_MAX = 100  # ustar name field; our names never need the prefix field or pax


class TarGzPart(msgspec.Struct, frozen=True, kw_only=True):
    """One tar entry's data (padding included), deflated as a piece of an archive's stream."""

    data_size: int  # the entry's size in its tar header: NDJSON bytes, newlines included
    lines: int
    crc32: int  # of the data plus its padding (the archive's gzip trailer combines these)
    checksums: Checksums  # of the part's bytes; ``checksums.size`` is its compressed size


def padded(data_size: int) -> int:
    """Bytes of an entry's data in the tar stream: its size rounded up to a 512-byte block."""
    return data_size + (-data_size % BLOCK)


def tar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file ``name`` of ``size`` bytes."""
    raw = name.encode("utf-8")
    if not raw or len(raw) > _NAME_MAX or "/" in name:
        raise ValueError(f"tar entry name must be 1..{_NAME_MAX} bytes without '/': {name!r}")
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def entry_header(name: str, size: int) -> bytes:
    """``tar_header(name, size)`` as a stored deflate block (``ENTRY_HEADER_SIZE`` bytes)."""
    return stored_blocks(tar_header(name, size), final=False)


def archive_tail(entries: Iterable[tuple[str, TarGzPart]]) -> bytes:
    """The end of the archive of ``entries`` (names and parts, in order): the end-of-archive
    blocks (final) and the gzip trailer, whose CRC-32 and size cover the whole tar stream."""
    crc = size = 0
    for name, part in entries:
        crc = crc32(tar_header(name, part.data_size), crc)
        crc = crc32_combine(crc, part.crc32, padded(part.data_size))
        size += BLOCK + padded(part.data_size)
    return END_OF_ARCHIVE + trailer(crc32(_END_BLOCKS, crc), size + len(_END_BLOCKS))


def snapshot_entry_name(identifier: str, n: int) -> str:
    return f"{identifier}_{n}.ndjson"


def chunk_entry_name(n: int) -> str:
    return f"chunk_{n}.ndjson"


class PartWriter:
    """Deflate one tar entry's data, then its padding, into one part written to ``out``.

    Every byte written to ``out`` also goes to the digesters in ``also`` (e.g. the running
    checksums of the archives this part belongs to)."""

    def __init__(self, out: IO[bytes], *, level: int = DEFAULT_LEVEL,
                 also: Sequence[Digester] = ()) -> None:
        self._out = out
        self._member = DeflatePiece(level)
        self._digest = Digester(md5=True)
        self._also = also
        self._buf = bytearray()
        self.lines = 0

    @property
    def data_size(self) -> int:
        return self._member.data_size + len(self._buf)

    def _emit(self, data: bytes) -> None:
        if data:
            self._digest.update(data)
            for other in self._also:
                other.update(data)
            self._out.write(data)

    def write(self, data: bytes | bytearray) -> None:
        """Append encoded NDJSON (whole lines or not; lines are counted by newline)."""
        self.lines += data.count(b"\n")
        self._buf += data
        if len(self._buf) >= _FLUSH_AT:
            self._flush()

    def add_line(self, line: bytes) -> None:
        """Append one NDJSON record (given without its newline)."""
        check_line(line)
        self._buf += line
        self._buf.append(0x0A)
        self.lines += 1
        if len(self._buf) >= _FLUSH_AT:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        # Whole 1 MiB blocks only (the rest waits, unless final): the deflate input is cut at
        # the same offsets however the caller cut its writes, so the output is the same.
        whole = len(self._buf) if final else len(self._buf) - len(self._buf) % _FLUSH_AT
        if whole:
            self._emit(self._member.compress(self._buf[:whole]))
            del self._buf[:whole]

    def close(self) -> TarGzPart:
        size = self.data_size
        self._buf += bytes(-size % BLOCK)
        self._flush(final=True)
        self._emit(self._member.finish())
        return TarGzPart(data_size=size, lines=self.lines, crc32=self._member.crc,
                         checksums=self._digest.result())


def check_line(line: bytes) -> None:
    """An NDJSON record: not empty, no newline inside (the newline is added by the writer)."""
    if not line:
        raise ValueError("empty NDJSON line")
    if b"\n" in line:
        raise ValueError("NDJSON line contains a newline")


def write_part(blocks: Iterable[bytes], out: IO[bytes], *, data_size: int | None = None,
               level: int = DEFAULT_LEVEL, also: Sequence[Digester] = ()) -> TarGzPart:
    """Deflate already-encoded NDJSON ``blocks`` (e.g. a sealed chunk, decompressed) into one
    part on ``out``. ``data_size``, when given, is the size promised in the tar header: a
    different total raises ``IntegrityError`` (the header would lie)."""
    writer = PartWriter(out, level=level, also=also)
    for block in blocks:
        writer.write(block)
    if data_size is not None and writer.data_size != data_size:
        raise IntegrityError(f"tar entry holds {writer.data_size} bytes, header says {data_size}")
    return writer.close()


class ArchiveEntry(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    offset: int  # of the entry's header block in the archive
    part: TarGzPart


class TarGzArchive(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[ArchiveEntry]
    checksums: Checksums  # of the whole .tar.gz (md5 = WME ``version``)


class TarGzWriter:
    """Stream NDJSON lines into one deterministic tar.gz on ``out``.

    Entries are named ``entry_name(n)`` (n from 0) and cut before they would pass
    ``entry_limit`` bytes (a single longer line gets an entry of its own). Each entry's part is
    spooled compressed to a temporary file in ``spool_dir`` until the entry is cut.
    """

    def __init__(self, out: IO[bytes], *, entry_name: Callable[[int], str],
                 entry_limit: int = ENTRY_LIMIT, level: int = DEFAULT_LEVEL,
                 spool_dir: Path | None = None) -> None:
        if entry_limit < 1:
            raise ValueError("entry_limit must be positive")
        self._out = HashingWriter(out, md5=True)
        self._out.write(HEADER)
        self._name = entry_name
        self._limit = entry_limit
        self._level = level
        self._spool: IO[bytes] = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115
        self._part: PartWriter | None = None
        self._entries: list[ArchiveEntry] = []

    def add(self, line: bytes) -> None:
        """Append one record (without its newline)."""
        check_line(line)
        part = self._part
        if part is not None and part.data_size and part.data_size + len(line) + 1 > self._limit:
            self.cut()
            part = None
        if part is None:
            part = self._part = PartWriter(self._spool, level=self._level)
        part.add_line(line)

    def add_lines(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            self.add(line)

    def cut(self) -> None:
        """End the current entry now (e.g. at a chunk border); no-op if it is empty."""
        if self._part is None:
            return
        part = self._part.close()
        self._part = None
        name = self._name(len(self._entries))
        self._entries.append(ArchiveEntry(name=name, offset=self._out.tell(), part=part))
        self._out.write(entry_header(name, part.data_size))
        self._spool.seek(0)
        shutil.copyfileobj(self._spool, self._out, _FLUSH_AT)
        self._spool.seek(0)
        self._spool.truncate()

    def close(self) -> TarGzArchive:
        try:
            self.cut()
            self._out.write(archive_tail((e.name, e.part) for e in self._entries))
        finally:
            self._spool.close()
        return TarGzArchive(entries=self._entries, checksums=self._out.digest.result())

    def abort(self) -> None:
        self._spool.close()
