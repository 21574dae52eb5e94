"""Checksums taken while bytes are written, so no file is read twice to be verified."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Protocol

import msgspec

from feedserver.errors import IntegrityError

_READ = 1 << 20


class Sink(Protocol):
    """Anything fed the same bytes (another digest: the whole download's)."""

    def update(self, data: bytes, /) -> None: ...


class Checksums(msgspec.Struct, frozen=True, kw_only=True):
    """Size and digests of one downloadable file (hex digests)."""

    size: int
    sha256: str
    md5: str | None = None  # WME's ``version``: only where a WME client expects it


class Digester:
    """Running size, SHA-256 and (optionally) MD5 of a byte stream."""

    def __init__(self, *, md5: bool = False) -> None:
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._sha.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    def result(self) -> Checksums:
        return Checksums(size=self.size, sha256=self._sha.hexdigest(),
                         md5=self._md5.hexdigest() if self._md5 is not None else None)


class HashingWriter:
    """A write-only binary stream that hashes what passes through it to ``sink``.

    Only sequential writes are supported (``tell`` is the number of bytes written), which is
    all a tar or Parquet writer does.
    """

    def __init__(self, sink: IO[bytes], *, md5: bool = False) -> None:
        self.sink = sink
        self.digest = Digester(md5=md5)
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.digest.update(data)
        return self.sink.write(data)

    def tell(self) -> int:
        return self.digest.size

    def flush(self) -> None:
        self.sink.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        # The sink belongs to the caller; closing the wrapper only stops further writes.
        self.closed = True


def checksum_blocks(blocks: Iterable[bytes], *, md5: bool = False) -> Checksums:
    digest = Digester(md5=md5)
    for block in blocks:
        digest.update(block)
    return digest.result()


def file_blocks(path: Path) -> Iterable[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(_READ):
            yield block


def checksum_file(path: Path, *, md5: bool = False, also: Sink | None = None) -> Checksums:
    """Size and SHA-256 (and MD5) of the file at ``path``, read once; its bytes also go to
    ``also`` (the digest of a download made of several files back to back)."""
    digest = Digester(md5=md5)
    for block in file_blocks(path):
        digest.update(block)
        if also is not None:
            also.update(block)
    return digest.result()


def verify_file(path: Path, expected: Checksums) -> None:
    """Raise ``IntegrityError`` unless the file at ``path`` has ``expected``'s size and digests."""
    got = checksum_file(path, md5=expected.md5 is not None)
    if got != expected:
        raise IntegrityError(
            f"{path.name} does not match its checksum: {got.size} B sha256 {got.sha256}, "
            f"expected {expected.size} B sha256 {expected.sha256}")
