"""ONE gzip member (RFC 1952) assembled from deflate pieces written apart, byte-stable.

A deflate stream (RFC 1951) is a series of blocks; only the last has BFINAL set. A piece
compressed on its own and ended with a *sync flush* (an empty stored block: it ends
byte-aligned, not final) can be followed by any other such piece, by stored blocks, and
finally by a block with BFINAL: the result is one valid deflate stream. This is how pigz and
Go's pgzip (which WME uses) compress in parallel. Wrapped in one gzip header and one trailer
(CRC-32 and size of all the uncompressed data, combined from the pieces' with
``crc32_combine``), pieces written at different times make ONE gzip member, so every gzip
reader reads them, including those that stop after the first member (Python's ``tarfile`` in
stream mode ``r|gz``, Rust's ``flate2::GzDecoder``).

The header is always the same 10 bytes: no file name, no comment, modification time 0, no
extra flags, OS "unknown" (255). Python's ``gzip`` would record the time and the file name,
and zlib's own gzip wrapper the build platform; so header and trailer are written here and
only the raw deflate data comes from zlib-ng.

``stored_blocks`` wraps small data in *stored* deflate blocks (RFC 1951 §3.2.4): their bytes are
fixed by the specification, not by a compressor version, so they can be rebuilt at any time,
on any machine, identically (used for tar headers and the end-of-archive blocks).
"""

from __future__ import annotations

import struct

from zlib_ng import zlib_ng

# magic, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown)
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
TRAILER_SIZE = 8
_STORED_MAX = 0xFFFF
_MASK = 0xFFFFFFFF
# What deflates the pieces: recorded with them, since another version may give other bytes.
DEFLATE_VERSION = f"zlib-ng {zlib_ng.ZLIBNG_VERSION}"


def trailer(crc: int, size: int) -> bytes:
    """The gzip trailer: CRC-32 and size (mod 2**32) of ALL the member's uncompressed data."""
    return struct.pack("<II", crc & _MASK, size & _MASK)


def crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    return zlib_ng.crc32(data, crc)


def crc32_combine(crc1: int, crc2: int, size2: int) -> int:
    """CRC-32 of A + B from CRC-32(A), CRC-32(B) and len(B)."""
    return zlib_ng.crc32_combine(crc1, crc2, size2)


def stored_blocks(data: bytes, *, final: bool) -> bytes:
    """``data`` as raw stored deflate blocks (the last one final when ``final``)."""
    out = bytearray()
    view = memoryview(data)
    start = 0
    while True:
        block = view[start : start + _STORED_MAX]
        start += len(block)
        last = start >= len(view)
        out.append(1 if last and final else 0)  # BFINAL, BTYPE=00; byte-aligned after it
        out += struct.pack("<HH", len(block), len(block) ^ 0xFFFF)
        out += block
        if last:
            return bytes(out)


def stored_blocks_size(data_size: int) -> int:
    """Length of ``stored_blocks`` of ``data_size`` bytes, without building them."""
    return max(1, -(-data_size // _STORED_MAX)) * 5 + data_size


def stored_member(data: bytes) -> bytes:
    """A complete gzip member holding ``data`` in stored blocks."""
    return HEADER + stored_blocks(data, final=True) + trailer(crc32(data), len(data))


class DeflatePiece:
    """A piece of a deflate stream compressed with zlib-ng: feed ``compress``, end with
    ``finish`` (a sync flush: byte-aligned, not final, so anything may follow). Each returns
    the bytes produced so far; ``crc`` and ``data_size`` describe the input."""

    def __init__(self, level: int) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be 0..9, not {level}")
        self._deflate = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS)
        self.crc = 0
        self.data_size = 0
        self._finished = False

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._finished:
            raise ValueError("deflate piece already finished")
        self.crc = zlib_ng.crc32(data, self.crc)
        self.data_size += len(data)
        return self._deflate.compress(data)

    def finish(self) -> bytes:
        if self._finished:
            raise ValueError("deflate piece already finished")
        self._finished = True
        return self._deflate.flush(zlib_ng.Z_SYNC_FLUSH)
