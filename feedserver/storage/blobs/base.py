"""The blob store protocol: what the feeds need from object storage.

Keys are ``/``-separated relative paths built by the feeds from validated identifiers;
``check_key`` re-checks them in every implementation so that no key can escape the store's
root. Writes are atomic: a reader sees either nothing or the whole object.

Every method raises only feedserver errors: ``InvalidIdentifier`` for a hostile key,
``BlobNotFound`` for a missing object where one is required, ``StorageError`` when the backend
fails (disk, network, bucket). Vendor exceptions (``OSError`` details, botocore) are translated
inside the implementation and never leave it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from feedserver.errors import InvalidIdentifier

_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,254}$")
READ_BLOCK = 1024 * 1024


class BlobInfo(msgspec.Struct, frozen=True):
    key: str
    size: int
    etag: str
    last_modified: float  # seconds since the epoch, UTC


def check_key(key: str) -> str:
    """Reject keys that are empty, absolute, or contain ``..``/odd characters
    (``InvalidIdentifier``)."""
    parts = key.split("/")
    if not key or any(not _KEY_PART.match(p) or p in {".", ".."} for p in parts):
        raise InvalidIdentifier(f"invalid storage key {key!r}")
    return key


@runtime_checkable
class BlobStore(Protocol):
    """Object storage: a filesystem folder (embedded) or an S3 bucket (distributed)."""

    def put_file(self, key: str, path: Path) -> BlobInfo:
        """Upload a local file atomically (multipart when large).
        Raises ``InvalidIdentifier``, ``StorageError`` (also when ``path`` cannot be read)."""

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        """Store a small object atomically. Raises ``InvalidIdentifier``, ``StorageError``."""

    def get_bytes(self, key: str) -> bytes:
        """Whole object (small objects: manifests, pointers).
        Raises ``BlobNotFound``, ``InvalidIdentifier``, ``StorageError``."""

    def open_range(self, key: str, start: int = 0,
                   end: int | None = None) -> Generator[bytes, None, None]:
        """Stream bytes ``[start, end)`` in blocks without loading the object in memory;
        ``close()`` the generator to release the file or connection before the end.
        Raises ``BlobNotFound`` (on the call), ``InvalidIdentifier``, ``StorageError``."""

    def stat(self, key: str) -> BlobInfo:
        """Size and etag. Raises ``BlobNotFound``, ``InvalidIdentifier``, ``StorageError``."""

    def exists(self, key: str) -> bool:
        """Raises ``InvalidIdentifier``, ``StorageError``."""

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (a ``/``-terminated folder or a key prefix), sorted.
        Raises ``InvalidIdentifier``, ``StorageError``."""

    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys; missing ones are ignored. Raises ``InvalidIdentifier``,
        ``StorageError``."""

    def presign(self, key: str, seconds: int,
                byte_range: tuple[int, int] | None = None) -> str | None:
        """A short-lived direct URL, or None when the store cannot give one. With
        ``byte_range`` ``(start, stop)`` the URL is bound to those bytes: it answers them and
        nothing else (the range is part of the signature). Raises ``InvalidIdentifier``,
        ``StorageError``."""

    def local_path(self, key: str) -> Path | None:
        """The object as a file on this machine (zero-copy serving with ``sendfile``), or
        None when the store keeps no local file (S3). The file may be missing: opening it
        then fails. Raises ``InvalidIdentifier``."""


class SocketRange:
    """A stored byte range as it arrives from the store over a plain TCP socket, for a server
    that moves it to its client without reading it (``splice(2)``): ``head``, the bytes the
    store's HTTP client already read past the response headers, comes first, then the next
    ``length - len(head)`` bytes on the socket ``fileno`` (non-blocking). The holder reads
    nothing else from the socket and calls ``close`` once: ``complete`` when exactly those
    bytes were consumed (the connection goes back to the store's pool), else the connection
    is closed."""

    __slots__ = ("_finish", "fileno", "head", "length")

    def __init__(self, head: bytes, fileno: int, length: int,
                 finish: Callable[[bool], None]) -> None:
        self.head = head
        self.fileno = fileno
        self.length = length
        self._finish: Callable[[bool], None] | None = finish

    def close(self, *, complete: bool) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            finish(complete)


@runtime_checkable
class SocketReads(Protocol):
    """A store whose ranged reads can hand over their socket (S3 over plain HTTP)."""

    def splices(self) -> bool:
        """Whether ``open_socket`` can give a socket at all (plain HTTP, Linux)."""

    def open_socket(self, key: str, start: int, stop: int
                    ) -> SocketRange | Generator[bytes, None, None]:
        """Bytes ``[start, stop)`` (``stop > start``) as a ``SocketRange``, or as blocks
        (``open_range``) when this answer cannot be handed over (chunked or encoded).
        Raises ``BlobNotFound`` (on the call), ``InvalidIdentifier``, ``StorageError``."""
