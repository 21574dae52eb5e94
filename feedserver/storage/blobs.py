"""Blob storage: one protocol, a filesystem implementation (default) and S3 (``s3.py``).

Keys are ``/``-separated relative paths built by the feeds from validated identifiers; this
module re-checks them so that no key can escape the store's root. Writes are atomic: a reader
sees either nothing or the whole object (filesystem: write to a temp file, fsync, rename;
S3: a PUT or a completed multipart upload).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import msgspec

from feedserver.errors import BlobNotFound, InvalidIdentifier, StorageError

_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,254}$")
READ_BLOCK = 1024 * 1024


class BlobInfo(msgspec.Struct, frozen=True):
    key: str
    size: int
    etag: str
    last_modified: float  # seconds since the epoch, UTC


def check_key(key: str) -> str:
    """Reject keys that are empty, absolute, or contain ``..``/odd characters."""
    parts = key.split("/")
    if not key or any(not _KEY_PART.match(p) or p in {".", ".."} for p in parts):
        raise InvalidIdentifier(f"invalid storage key {key!r}")
    return key


@runtime_checkable
class BlobStore(Protocol):
    """What the feeds need from object storage."""

    def put_file(self, key: str, path: Path) -> BlobInfo:
        """Upload a local file atomically (multipart when large)."""

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        """Store a small object atomically."""

    def get_bytes(self, key: str) -> bytes:
        """Whole object (small objects: manifests, pointers)."""

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` in blocks without loading the object in memory."""

    def stat(self, key: str) -> BlobInfo:
        """Size and etag; raises ``BlobNotFound``."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (a ``/``-terminated folder or a key prefix), sorted."""

    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys; missing ones are ignored."""

    def presign(self, key: str, seconds: int) -> str | None:
        """A short-lived direct URL, or None when the store cannot give one."""


class FilesystemBlobStore:
    """Blobs as files under ``root``; the embedded default."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _info(self, key: str, path: Path) -> BlobInfo:
        st = path.stat()
        etag = f"{st.st_size:x}-{st.st_mtime_ns:x}"
        return BlobInfo(key=key, size=st.st_size, etag=etag, last_modified=st.st_mtime)

    def _commit(self, key: str, fill: BinaryIO | bytes | Path) -> BlobInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(fill, bytes):
                    out.write(fill)
                elif isinstance(fill, Path):
                    with fill.open("rb") as src:
                        shutil.copyfileobj(src, out, READ_BLOCK)
                else:
                    shutil.copyfileobj(fill, out, READ_BLOCK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise StorageError(f"cannot write {key!r}: {exc.strerror}") from exc
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return self._info(key, target)

    def put_file(self, key: str, path: Path) -> BlobInfo:
        return self._commit(key, Path(path))

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        return self._commit(key, data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return self._iter(fh, start, end)

    @staticmethod
    def _iter(fh: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
        with fh:
            fh.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                block = fh.read(READ_BLOCK if remaining is None else min(READ_BLOCK, remaining))
                if not block:
                    return
                if remaining is not None:
                    remaining -= len(block)
                yield block

    def stat(self, key: str) -> BlobInfo:
        try:
            return self._info(key, self._path(key))
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        folder, _, stem = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return iter(())
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                rel = Path(dirpath, name).relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    keys.append(rel)
        del stem
        return iter(sorted(keys))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Prune now-empty folders so listings stay cheap.
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def presign(self, key: str, seconds: int) -> str | None:
        check_key(key)  # same contract as S3: a hostile key is an error, not a silent None
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()
