"""Blob storage: the ``BlobStore`` protocol (``base``), the filesystem store (embedded) and
S3 (distributed), chosen by ``open_blob_store(settings)``.

The protocol, its record and the filesystem store are re-exported here, so callers import
``feedserver.storage.blobs`` and never an implementation module.
"""

from __future__ import annotations

from feedserver.config import Settings
from feedserver.storage.blobs.base import (
    READ_BLOCK,
    BlobInfo,
    BlobStore,
    SocketRange,
    SocketReads,
    check_key,
)
from feedserver.storage.blobs.filesystem import FilesystemBlobStore

__all__ = ["READ_BLOCK", "BlobInfo", "BlobStore", "FilesystemBlobStore", "SocketRange",
           "SocketReads", "check_key", "open_blob_store"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The filesystem store under ``data_dir/blobs`` or the S3 store, per ``blob_store_kind``.
    Raises ``StorageError`` when the store cannot be reached or created."""
    if settings.blob_store_kind == "s3":
        # Imported here so embedded deployments never load boto3.
        from feedserver.storage.blobs.s3 import S3BlobStore

        return S3BlobStore.from_settings(settings)
    return FilesystemBlobStore(settings.blob_root)
