"""Split a bz2 *multistream* dump into byte ranges that parse independently.

A ``pages-articles-multistream.xml.bz2`` is a concatenation of bz2 streams: the first holds the
XML header and ``<siteinfo>``, each following one holds whole ``<page>`` elements (100 in
Wikimedia's dumps), the last one closes ``</mediawiki>``. Every stream starts byte-aligned with
``BZh`` + level digit + the block magic ``0x314159265359`` (or the end-of-stream magic for an
empty stream), so the boundaries can be found by scanning, without the companion index file.

A range ``[start, end)`` of whole streams becomes a readable dump when wrapped in the header
(the text of the first stream before its first ``<page>``) and ``</mediawiki>``: see
``DumpSlice`` and ``dumpfile.open_dump``. Split points are checked by decompressing the first
block there: it must start with ``<page>``. Files whose streams cut pages (``pbzip2`` output) or
that hold a single stream are therefore not split.
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path
from typing import IO

import msgspec

from feedserver.errors import DumpError

_STREAM_START = re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)")
_SCAN_BLOCK = 1 << 20
_MAX_SCAN = 64 << 20  # give up looking for a stream start this far past a target offset
_HEADER_LIMIT = 16 << 20  # decompressed header text kept at most (siteinfo is a few KB)
_PROBE = 256  # decompressed bytes looked at to confirm a page boundary
_MAX_PROBES = 16  # stream starts tried per cut before giving up on splitting there
FOOTER = b"</mediawiki>\n"


class DumpSlice(msgspec.Struct, frozen=True, kw_only=True):
    """Whole bz2 streams ``[start, end)`` of a dump, read as ``prefix + streams + suffix``."""

    start: int
    end: int
    prefix: bytes = b""
    suffix: bytes = b""


def _next_stream(fh: IO[bytes], offset: int, size: int) -> int | None:
    """Offset of the first stream start at or after ``offset`` (None if none near)."""
    pos = offset
    overlap = 9  # a match may straddle two blocks
    while pos < size and pos - offset < _MAX_SCAN:
        fh.seek(pos)
        block = fh.read(_SCAN_BLOCK + overlap)
        if not block:
            return None
        match = _STREAM_START.search(block)
        if match is not None:
            return pos + match.start()
        pos += _SCAN_BLOCK
    return None


def _decompress_head(fh: IO[bytes], offset: int, limit: int) -> bytes:
    """Up to ``limit`` decompressed bytes of the stream at ``offset``."""
    fh.seek(offset)
    decomp = bz2.BZ2Decompressor()
    out = bytearray()
    while len(out) < limit and not decomp.eof:
        if decomp.needs_input:
            data = fh.read(1 << 16)
            if not data:
                break
        else:
            data = b""
        out += decomp.decompress(data, limit - len(out))
    return bytes(out)


def _header(fh: IO[bytes]) -> bytes | None:
    """The XML before the first ``<page>``: what every slice but the first is prefixed with."""
    text = _decompress_head(fh, 0, _HEADER_LIMIT)
    end = text.find(b"<page>")
    if end == -1:
        end = text.rfind(b"</siteinfo>")
        if end == -1:
            return None
        end = text.index(b">", end) + 1
        return text[:end] + b"\n"
    return text[: text.rfind(b"\n", 0, end) + 1]


def split_multistream(path: Path, parts: int) -> list[DumpSlice]:
    """Up to ``parts`` slices of a multistream bz2 dump, in file order; ``[]`` if it cannot
    be split (not bz2, one stream, streams that cut pages)."""
    if parts < 2:
        return []
    try:
        with path.open("rb") as fh:
            if fh.read(3) != b"BZh":
                return []
            size = path.stat().st_size
            cuts: list[int] = []
            for k in range(1, parts):
                target = max(size * k // parts, cuts[-1] + 1 if cuts else 1)
                cut = _next_stream(fh, target, size)
                probes = 1
                while cut is not None and not _starts_page(fh, cut):
                    probes += 1
                    cut = _next_stream(fh, cut + 1, size) if probes <= _MAX_PROBES else None
                if cut is None or cut >= size:
                    break
                if not cuts or cut > cuts[-1]:
                    cuts.append(cut)
            if not cuts:
                return []
            header = _header(fh)
    except (OSError, EOFError) as exc:
        raise DumpError(f"cannot read dump {path.name}: {exc}", source=str(path)) from exc
    if header is None:
        return []
    bounds = [0, *cuts, size]
    slices = []
    for i in range(len(bounds) - 1):
        first, last = i == 0, i == len(bounds) - 2
        slices.append(DumpSlice(start=bounds[i], end=bounds[i + 1],
                                prefix=b"" if first else header,
                                suffix=b"" if last else FOOTER))
    return slices


def _starts_page(fh: IO[bytes], offset: int) -> bool:
    try:
        head = _decompress_head(fh, offset, _PROBE)
    except (OSError, EOFError):
        return False  # a false match inside compressed data
    return head.lstrip().startswith(b"<page>")
