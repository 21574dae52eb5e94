"""Files checked against their manifest's SHA-256 before any of their bytes is served.

A Parquet reader trusts the footer and the column chunks it fetches by range; a damaged shard
would give it wrong rows without any error (page CRCs catch only some damage, and only when
the reader asks). So a shard is never served until this process has hashed the whole stored
object once and found the manifest's size and SHA-256. The result is remembered per blob key
together with the store's etag (the filesystem's size and mtime, S3's ETag): a replaced or
rewritten object is hashed again. Concurrent first requests of one key hash it once.

Cost: one full read per shard and process, on its first body request (a 256 MiB shard:
a fraction of a second of disk and SHA-256); then one ``stat`` per request.
"""

from __future__ import annotations

import hashlib

import anyio
import anyio.to_thread

from feedserver.errors import IntegrityError
from feedserver.storage.blobs import BlobStore

_KEPT = 10_000  # remembered keys per process; forgetting only costs a re-hash


def _sha256(blobs: BlobStore, key: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for block in blobs.open_range(key):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


class VerifiedBlobs:
    """Per-process memory of blobs whose bytes matched their manifest."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._ok: dict[str, tuple[str, str]] = {}  # key -> (store etag, sha256 verified)
        self._locks: dict[str, anyio.Lock] = {}

    async def check(self, key: str, size: int, sha256: str) -> None:
        """Return when the stored object ``key`` is ``size`` bytes with ``sha256``; raise
        ``IntegrityError`` (nothing served) when it is not, ``BlobNotFound`` when missing."""
        info = await anyio.to_thread.run_sync(self.blobs.stat, key)
        if info.size != size:
            raise self._corrupt(key, f"{info.size} B stored, {size} B in the manifest")
        if self._ok.get(key) == (info.etag, sha256):
            return
        if len(self._locks) >= _KEPT:
            self._locks.clear()
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            if self._ok.get(key) == (info.etag, sha256):
                return
            got_size, got = await anyio.to_thread.run_sync(_sha256, self.blobs, key)
            if got_size != size or got != sha256:
                raise self._corrupt(key, f"sha256 {got} stored, {sha256} in the manifest")
            if len(self._ok) >= _KEPT:
                self._ok.clear()
            self._ok[key] = (info.etag, sha256)

    @staticmethod
    def _corrupt(key: str, why: str) -> IntegrityError:
        name = key.rsplit("/", 1)[-1]
        return IntegrityError(f"{name} is damaged in storage ({why}); it is not served. "
                              "Run `feedserver snapshot verify` on the server.")
