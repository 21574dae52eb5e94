"""Choose the blob store named by the settings (``blob_backend`` / ``mode``)."""

from __future__ import annotations

from feedserver.config import Settings
from feedserver.storage.blobs import BlobStore, FilesystemBlobStore


def open_blob_store(settings: Settings) -> BlobStore:
    """The filesystem store under ``data_dir/blobs`` or the S3 store, per ``blob_store_kind``."""
    if settings.blob_store_kind == "s3":
        # Imported here so embedded deployments never load boto3.
        from feedserver.storage.s3 import S3BlobStore

        return S3BlobStore.from_settings(settings)
    return FilesystemBlobStore(settings.blob_root)
