"""gzip members (RFC 1952) whose bytes depend only on their content.

A gzip file may hold several members back to back; every reader (``gzip``, ``tarfile``,
zlib-ng, Go's ``compress/gzip``, GNU gzip) decompresses them as one stream. The WME archives
are built from such members, so pieces written separately can be served concatenated.

Every member starts with the same 10-byte header: no file name, no comment, modification time
0, no extra flags, OS "unknown" (255). Python's ``gzip`` would record the time and the file
name, and zlib's own gzip wrapper records the build platform; so the header and trailer
(CRC-32 and size) are written here and only the raw deflate data comes from zlib-ng.

``stored_member`` wraps small data in *stored* deflate blocks (RFC 1951 §3.2.4): their bytes
are fixed by the specification, not by a compressor version, so such a member can be rebuilt
at any time, on any machine, identically (used for tar headers and the end-of-archive blocks).
"""

from __future__ import annotations

import struct

from zlib_ng import zlib_ng

# magic, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown)
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_STORED_MAX = 0xFFFF
# What deflates the parts: recorded with them, since another version may give other bytes.
DEFLATE_VERSION = f"zlib-ng {zlib_ng.ZLIBNG_VERSION}"
_MASK = 0xFFFFFFFF


def _trailer(crc: int, size: int) -> bytes:
    return struct.pack("<II", crc & _MASK, size & _MASK)


def stored_member(data: bytes) -> bytes:
    """A complete gzip member holding ``data`` in stored (uncompressed) deflate blocks."""
    out = bytearray(HEADER)
    view = memoryview(data)
    start = 0
    while True:
        block = view[start : start + _STORED_MAX]
        start += len(block)
        final = start >= len(view)
        out.append(1 if final else 0)  # BFINAL, BTYPE=00 (stored); byte-aligned after it
        out += struct.pack("<HH", len(block), len(block) ^ 0xFFFF)
        out += block
        if final:
            break
    out += _trailer(zlib_ng.crc32(data), len(data))
    return bytes(out)


def stored_member_size(data_size: int) -> int:
    """Length of ``stored_member`` of ``data_size`` bytes, without building it."""
    blocks = max(1, -(-data_size // _STORED_MAX))
    return len(HEADER) + blocks * 5 + data_size + 8


class DeflateMember:
    """One gzip member compressed incrementally with zlib-ng: feed ``compress``, end with
    ``finish``. Each returns the member bytes produced so far (the header comes first)."""

    def __init__(self, level: int) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be 0..9, not {level}")
        self._deflate = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -zlib_ng.MAX_WBITS)
        self._crc = 0
        self.data_size = 0
        self._started = False
        self._finished = False

    def _head(self, out: bytes) -> bytes:
        if self._started:
            return out
        self._started = True
        return HEADER + out

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._finished:
            raise ValueError("gzip member already finished")
        self._crc = zlib_ng.crc32(data, self._crc)
        self.data_size += len(data)
        return self._head(self._deflate.compress(data))

    def finish(self) -> bytes:
        if self._finished:
            raise ValueError("gzip member already finished")
        self._finished = True
        return self._head(self._deflate.flush()) + _trailer(self._crc, self.data_size)
