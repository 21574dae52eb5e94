"""Canonical record encoding and the content hashes built on it (pure, no storage).

A record's canonical form is its msgspec JSON encoding (``omit_defaults``, field order of the
Struct) followed by ``\\n``: exactly the NDJSON line stored in a chunk. Hashing the stored
bytes, not a re-encoding, lets anyone verify a download without this code.

The *content root hash* is SHA-256 over the sorted per-article hex digests, each followed by
``\\n``. Sorting makes it independent of chunk layout and record order, so ``base + diff`` can be
proved equal to the next version whatever the chunking. ``RootHasher`` spills sorted runs to
temporary files so memory stays flat for any number of articles. The SHA-256 of whole files
(chunks, downloads) is ``checksums.checksum_file``.
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

ENCODER = msgspec.json.Encoder()
DIGEST_SIZE = 32
# Digests held in memory before a sorted run is spilled to disk (32 B each: ~32 MB).
_RUN_LIMIT = 1_000_000
_GIL_FREE = 2048  # hashlib releases the GIL for inputs of at least this many bytes


def encode_line(record: Any, buf: bytearray) -> memoryview:
    """Append ``record``'s canonical line (with ``\\n``) to ``buf``; return a view of the line
    *without* the newline (valid until ``buf`` is resized)."""
    start = len(buf)
    ENCODER.encode_into(record, buf, start)
    end = len(buf)
    buf.append(0x0A)
    return memoryview(buf)[start:end]


def line_digest(line: bytes | memoryview) -> bytes:
    """Raw SHA-256 of a line given without its trailing newline.

    Fed in pieces below hashlib's 2 KiB GIL-release threshold: releasing the GIL for a few
    microseconds of hashing per record lets the dump's decompression thread take it, and
    getting it back cost ~6x the hashing itself (measured while staging).
    """
    if len(line) < _GIL_FREE:
        return hashlib.sha256(line).digest()
    view = memoryview(line)
    digest = hashlib.sha256()
    for start in range(0, len(view), _GIL_FREE - 1):
        digest.update(view[start : start + _GIL_FREE - 1])
    return digest.digest()


def article_hash(line: bytes | memoryview) -> str:
    """Hex SHA-256 of an article's NDJSON line; a trailing newline, if present, is ignored."""
    if len(line) and line[-1] == 0x0A:
        line = line[:-1]
    return hashlib.sha256(line).hexdigest()


class RootHasher:
    """Order-independent content root hash over per-article hashes.

    Add hex (``add``) or raw (``add_digest``) per-article hashes in any order, then call
    ``hexdigest()`` once. Duplicates are kept (two equal records count twice).
    """

    def __init__(self, spill_dir: Path | None = None, run_limit: int = _RUN_LIMIT) -> None:
        self._buf: list[bytes] = []
        self._runs: list[IO[bytes]] = []
        self._spill_dir = spill_dir
        self._run_limit = run_limit
        self.count = 0

    def add(self, hex_hash: str) -> None:
        self.add_digest(bytes.fromhex(hex_hash))

    def add_digest(self, digest: bytes) -> None:
        self._buf.append(digest)
        self.count += 1
        if len(self._buf) >= self._run_limit:
            self._spill()

    def update(self, digests: Iterable[bytes]) -> None:
        for digest in digests:
            self.add_digest(digest)

    def _spill(self) -> None:
        self._buf.sort()
        run = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115 - closed in hexdigest
        run.write(b"".join(self._buf))
        run.seek(0)
        self._runs.append(run)
        self._buf = []

    @staticmethod
    def _read_run(run: IO[bytes]) -> Iterator[bytes]:
        while block := run.read(DIGEST_SIZE * 4096):
            for i in range(0, len(block), DIGEST_SIZE):
                yield block[i : i + DIGEST_SIZE]

    def hexdigest(self) -> str:
        self._buf.sort()
        root = hashlib.sha256()
        try:
            streams = [self._read_run(run) for run in self._runs]
            # Sorting raw digests sorts their hex forms identically (both are big-endian).
            for digest in heapq.merge(self._buf, *streams):
                root.update(digest.hex().encode("ascii") + b"\n")
        finally:
            for run in self._runs:
                run.close()
            self._runs = []
            self._buf = []
        return root.hexdigest()


def root_hash(hex_hashes: Iterable[str]) -> str:
    """Content root hash of an iterable of hex per-article hashes (convenience)."""
    hasher = RootHasher()
    for h in hex_hashes:
        hasher.add(h)
    return hasher.hexdigest()
