"""The ``BlobStore`` contract (``tests/contracts/blobs.py``) on the filesystem store."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedserver.config import load_settings
from feedserver.storage.blobs import BlobStore, FilesystemBlobStore
from tests.contracts.blobs import *  # noqa: F403 - the contract's tests run here
from tests.contracts.blobs import open_store


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    blobs = open_store(load_settings(env={}, data_dir=str(tmp_path / "var"),
                                     blob_backend="filesystem"))
    assert isinstance(blobs, FilesystemBlobStore)
    return blobs
