"""Chunk files: NDJSON records compressed as ONE zstd frame per chunk.

Because a concatenation of zstd frames is itself a valid ``.zst`` stream, the chunks of a
snapshot served back to back are the whole-snapshot download (``zstd -d`` gives the NDJSON).

``ChunkWriter`` stages chunks into a local folder, rolling to a new file when the
uncompressed size reaches ``chunk_size``; beside every chunk it keeps the raw SHA-256 of each
line (``.sha`` sidecar) so that sealing can compute the content root hash without
decompressing chunks it does not have to rewrite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import zstandard

from feedserver.errors import IntegrityError
from feedserver.formats.hashing import DIGEST_SIZE, encode_line, line_digest
from feedserver.models import Article

ARTICLE_DECODER = msgspec.json.Decoder(Article)
# Flush the line buffer to the compressor in blocks this big: fewer calls into zstd.
_FLUSH_AT = 1 << 20


class StagedChunk(msgspec.Struct, kw_only=True):
    """A chunk written to local disk, before sealing decides its final index."""

    namespace: int
    seq: int  # order within its namespace for this writer
    path: str
    hashes_path: str
    article_count: int
    uncompressed_size: int


class _OpenChunk:
    def __init__(self, path: Path, level: int, namespace: int, seq: int) -> None:
        self.path = path
        self.hashes_path = path.with_suffix(".sha")
        self.namespace = namespace
        self.seq = seq
        self.fh: IO[bytes] = path.open("wb")
        self.hashes: IO[bytes] = self.hashes_path.open("wb")
        self.compressor = zstandard.ZstdCompressor(level=level, threads=1).compressobj()
        self.buf = bytearray()
        self.count = 0
        self.size = 0

    def flush(self) -> None:
        if self.buf:
            self.fh.write(self.compressor.compress(bytes(self.buf)))
            self.size += len(self.buf)
            self.buf.clear()

    def close(self) -> StagedChunk:
        self.flush()
        self.fh.write(self.compressor.flush())
        self.fh.close()
        self.hashes.close()
        return StagedChunk(
            namespace=self.namespace, seq=self.seq, path=str(self.path),
            hashes_path=str(self.hashes_path), article_count=self.count,
            uncompressed_size=self.size,
        )

    def abort(self) -> None:
        self.fh.close()
        self.hashes.close()


class ChunkWriter:
    """Stage records per namespace into rolling zstd chunk files under ``folder``."""

    def __init__(self, folder: Path, *, chunk_size: int, level: int, prefix: str = "c") -> None:
        self.folder = folder
        self.chunk_size = max(1, chunk_size)
        self.level = level
        self.prefix = prefix
        self._open: dict[int, _OpenChunk] = {}
        self._seq: dict[int, int] = {}
        self.closed: list[StagedChunk] = []

    def add(self, namespace: int, record: Any) -> tuple[int, int, bytes]:
        """Append a record; return (chunk seq, line number in chunk, raw line digest)."""
        chunk = self._open.get(namespace)
        if chunk is None:
            seq = self._seq.get(namespace, 0)
            self._seq[namespace] = seq + 1
            path = self.folder / f"{self.prefix}_{namespace}_{seq}.ndjson.zst"
            chunk = self._open[namespace] = _OpenChunk(path, self.level, namespace, seq)
        line = encode_line(record, chunk.buf)
        digest = line_digest(line)
        del line  # release the view so the buffer can grow
        chunk.hashes.write(digest)
        position = (chunk.seq, chunk.count)
        chunk.count += 1
        pending = len(chunk.buf)
        if chunk.size + pending >= self.chunk_size:
            self.closed.append(chunk.close())
            del self._open[namespace]
        elif pending >= _FLUSH_AT:
            chunk.flush()
        return position[0], position[1], digest

    def close(self) -> list[StagedChunk]:
        for namespace in sorted(self._open):
            self.closed.append(self._open.pop(namespace).close())
        return sorted(self.closed, key=lambda c: (c.namespace, c.seq))

    def abort(self) -> None:
        for chunk in self._open.values():
            chunk.abort()
        self._open.clear()


def read_hashes(path: Path) -> Iterator[bytes]:
    """The raw per-line digests of a staged chunk's sidecar."""
    with path.open("rb") as fh:
        while block := fh.read(DIGEST_SIZE * 4096):
            for i in range(0, len(block), DIGEST_SIZE):
                yield block[i : i + DIGEST_SIZE]


def iter_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """NDJSON lines (without newline) from compressed zstd blocks; frames may follow frames."""
    dctx = zstandard.ZstdDecompressor()
    tail = b""
    decomp = dctx.decompressobj()
    try:
        for block in blocks:
            data = block
            while data:
                out = decomp.decompress(data)
                data = decomp.unused_data if decomp.eof else b""
                if decomp.eof:
                    decomp = dctx.decompressobj()
                if out:
                    lines = (tail + out).split(b"\n")
                    tail = lines.pop()
                    yield from lines
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"corrupt chunk data: {exc}") from exc
    if tail:
        raise IntegrityError("chunk data ends inside a record")


def iter_file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        yield from iter_lines(iter(lambda: fh.read(1 << 20), b""))
