"""``BlobStore`` on the local filesystem: the embedded default.

Blobs are files under ``root``. A write goes to a temporary file, is fsynced and renamed over
the target, so a reader sees either nothing or the whole object. ``OSError`` is translated
here: a missing file is ``BlobNotFound``, any other failure ``StorageError``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from feedserver.errors import BlobNotFound, StorageError
from feedserver.storage.blobs.base import READ_BLOCK, BlobInfo, check_key


@contextmanager
def _translated(key: str, action: str) -> Iterator[None]:
    """A missing file is ``BlobNotFound``; any other ``OSError`` a ``StorageError``."""
    try:
        yield
    except FileNotFoundError:
        raise BlobNotFound(key) from None
    except OSError as exc:
        raise StorageError(f"cannot {action} {key!r}: {exc.strerror or exc}") from exc


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
        path = self._path(key)
        with _translated(key, "read"):
            return path.read_bytes()

    def open_range(self, key: str, start: int = 0,
                   end: int | None = None) -> Generator[bytes, None, None]:
        path = self._path(key)
        with _translated(key, "read"):
            fh = path.open("rb")
        return self._iter(key, fh, start, end)

    @staticmethod
    def _iter(key: str, fh: BinaryIO, start: int,
              end: int | None) -> Generator[bytes, None, None]:
        with fh, _translated(key, "read"):
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
        path = self._path(key)
        with _translated(key, "stat"):
            return self._info(key, path)

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
            with _translated(key, "delete"):
                path.unlink(missing_ok=True)
                # Prune now-empty folders so listings stay cheap.
                parent = path.parent
                while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent

    def presign(self, key: str, seconds: int,
                byte_range: tuple[int, int] | None = None) -> str | None:
        check_key(key)  # same contract as S3: a hostile key is an error, not a silent None
        return None

    def local_path(self, key: str) -> Path:
        return self._path(key)
