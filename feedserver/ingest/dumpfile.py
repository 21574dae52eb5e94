"""Opening a dump file: compression by magic bytes, UTF-16 transcoded to UTF-8, streaming.

The file name says nothing reliable (``.xml`` files get gzipped by proxies, ``.bz2`` files get
decompressed by browsers), so the first bytes decide.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from feedserver.errors import DumpError
from feedserver.ingest.multistream import DumpSlice

_BZ2_MAGIC = b"BZh"
_GZIP_MAGIC = b"\x1f\x8b"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CHUNK = 1 << 16
_PREFETCH_CHUNK = 1 << 20
_PREFETCH_DEPTH = 4  # chunks buffered ahead: bounded memory (~4 MiB)
_RAW_BLOCK = 1 << 18  # compressed bytes handed to the decompressor per call
_PUT_TIMEOUT = 0.5  # seconds between checks that the reader was not closed
_DECLARED_ENCODING = re.compile(rb"""^(<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")


class _Utf16ToUtf8(io.RawIOBase):
    """Streams a UTF-16 (with BOM) byte stream as UTF-8, one chunk at a time."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._decoder = codecs.getincrementaldecoder("utf-16")()
        self._pending = b""
        self._eof = False
        self._first = True

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        data = self._inner.read(_CHUNK)
        if not data:
            self._eof = True
        text = self._decoder.decode(data, final=self._eof)
        encoded = text.encode("utf-8")
        if self._first and encoded:
            self._first = False
            # The XML declaration, if any, must not claim UTF-16 any more.
            encoded = _DECLARED_ENCODING.sub(rb"\1\2UTF-8\2", encoded, count=1)
        self._pending += encoded

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            self._fill()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._inner.close()
        super().close()


def _bz2_blocks(raw: BinaryIO, limit: int | None = None) -> Iterator[bytes]:
    """Decompressed blocks of a (multi-stream) bz2 file, read in large compressed blocks.

    Large blocks matter: bz2.BZ2File feeds the decompressor 8 KiB at a time, and every call
    releases and re-takes the GIL, which stalls the parsing thread on a busy machine.
    ``limit`` stops after that many compressed bytes (a byte range of whole streams).
    Like BZ2File, data after the last stream that is not a bz2 stream is ignored.
    """
    decomp = bz2.BZ2Decompressor()
    fed = False  # has the current decompressor seen any input?
    streams = 0
    left = limit
    pending = b""
    while True:
        if decomp.eof:
            streams += 1
            pending = decomp.unused_data
            decomp, fed = bz2.BZ2Decompressor(), False
        if not pending and decomp.needs_input:
            size = _RAW_BLOCK if left is None else min(_RAW_BLOCK, left)
            pending = raw.read(size) if size > 0 else b""
            if left is not None:
                left -= len(pending)
            if not pending:
                if streams and not fed:
                    return
                raise EOFError("Compressed file ended before the end-of-stream marker "
                               "was reached")
        try:
            out = decomp.decompress(pending, _PREFETCH_CHUNK)
        except OSError:
            if streams and not fed:
                return  # trailing garbage after the last stream
            raise
        fed, pending = True, b""
        if out:
            yield out


class _Prefetch(io.RawIOBase):
    """Produces blocks ahead in a thread. bz2/zlib release the GIL while decompressing, so on
    a multi-core machine decompression overlaps XML parsing and page conversion."""

    def __init__(self, blocks: Iterator[bytes], closer: BinaryIO) -> None:
        self._blocks = blocks
        self._closer = closer
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(_PREFETCH_DEPTH)
        self._stop = threading.Event()
        self._chunk = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._run, name="dump-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        item: bytes | BaseException
        while not self._stop.is_set():
            try:
                item = next(self._blocks, b"")
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=_PUT_TIMEOUT)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if not self._chunk:
            if self._done:
                return 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._chunk = memoryview(item)
        size = min(len(buffer), len(self._chunk))
        buffer[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join(timeout=10)
            self._closer.close()
        super().close()


def _read_blocks(inner: BinaryIO) -> Iterator[bytes]:
    while block := inner.read(_PREFETCH_CHUNK):
        yield block


def _slice_blocks(raw: BinaryIO, part: DumpSlice) -> Iterator[bytes]:
    if part.prefix:
        yield part.prefix
    raw.seek(part.start)
    yield from _bz2_blocks(raw, part.end - part.start)
    if part.suffix:
        yield part.suffix


def open_dump(path: Path, *, prefetch: bool = True, part: DumpSlice | None = None) -> BinaryIO:
    """A binary stream of the dump's XML as UTF-8 (or as the XML declares), decompressed.

    Compressed files are decompressed ahead in a thread unless ``prefetch`` is False.
    ``part`` reads only those bz2 streams of a multistream dump, wrapped in its header and
    footer (see ``multistream``). Raises DumpError if the file cannot be opened.
    """
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise DumpError(f"cannot open dump {path.name}: {exc.strerror or exc}",
                        source=str(path)) from exc
    try:
        magic = raw.read(4)
        raw.seek(0)
        stream: BinaryIO
        if part is not None:
            if not magic.startswith(_BZ2_MAGIC):
                raise DumpError(f"cannot read dump {path.name}: only bz2 dumps can be sliced",
                                source=str(path))
            return io.BufferedReader(_Prefetch(_slice_blocks(raw, part), raw),
                                     buffer_size=_CHUNK)
        if magic.startswith(_BZ2_MAGIC) and prefetch:
            stream = io.BufferedReader(_Prefetch(_bz2_blocks(raw), raw),
                                       buffer_size=_CHUNK)
        elif magic.startswith(_BZ2_MAGIC):
            stream = bz2.BZ2File(raw)  # type: ignore[assignment]
        elif magic.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
            if prefetch:
                stream = io.BufferedReader(
                    _Prefetch(_read_blocks(stream), stream), buffer_size=_CHUNK)
        else:
            stream = raw
        head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
        if head in _UTF16_BOMS:
            return io.BufferedReader(_Utf16ToUtf8(stream), buffer_size=_CHUNK)
        return stream
    except DumpError:
        raw.close()
        raise
    except (OSError, EOFError) as exc:
        raw.close()
        raise DumpError(f"cannot read dump {path.name}: {describe(exc)}",
                        source=str(path)) from exc


def describe(exc: BaseException) -> str:
    """One line naming the cause, for the messages of DumpError."""
    if isinstance(exc, EOFError):
        return "file is truncated (compressed stream ended early)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and "Invalid data stream" in text:
        return "compressed data is corrupted (invalid bz2 data stream)"
    return text
