"""The ``BlobStore`` contract (``tests/contracts/blobs.py``) on S3: a real moto_server."""

from __future__ import annotations

import pytest

from feedserver.config import Settings
from feedserver.storage.blobs import BlobStore
from feedserver.storage.blobs.s3 import S3BlobStore
from tests.contracts.blobs import *  # noqa: F403 - the contract's tests run here
from tests.contracts.blobs import open_store

pytestmark = pytest.mark.integration


@pytest.fixture
def store(s3_settings: Settings) -> BlobStore:
    blobs = open_store(s3_settings)
    assert isinstance(blobs, S3BlobStore)
    return blobs
