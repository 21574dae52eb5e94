"""S3-specific behaviour of ``S3BlobStore`` on a real moto_server (the shared contract lives in
``tests/contracts/blobs.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.config import Settings
from feedserver.errors import BlobNotFound, InvalidIdentifier, StorageError
from feedserver.storage.blobs import SocketRange, SocketReads, open_blob_store
from feedserver.storage.blobs.s3 import S3BlobStore
from tests.conftest import free_port
from tests.integration.storage.socket_ranges import drain

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def _client(settings: Settings) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _raw_keys(settings: Settings) -> list[str]:
    resp = _client(settings).list_objects_v2(Bucket=settings.s3_bucket)
    return sorted(obj["Key"] for obj in resp.get("Contents", []))


def _buckets(settings: Settings) -> list[str]:
    return [b["Name"] for b in _client(settings).list_buckets().get("Buckets", [])
            if b["Name"] == settings.s3_bucket]


def test_factory_opens_s3_in_distributed_mode(s3_settings: Settings) -> None:
    settings = msgspec.structs.replace(s3_settings, mode="distributed", blob_backend="auto")
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    store.put_bytes("x", b"1")  # the bucket was created on open
    assert _raw_keys(settings) == ["x"]


def test_multipart_upload_is_used_above_threshold(s3_settings: Settings, tmp_path: Path) -> None:
    settings = msgspec.structs.replace(
        s3_settings, s3_multipart_threshold=5 * MiB, s3_multipart_chunksize=5 * MiB
    )
    store = S3BlobStore.from_settings(settings)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(12 * MiB))
    info = store.put_file("big", big)
    # A multipart ETag is "<md5 of part md5s>-<number of parts>".
    assert info.etag.endswith("-3")
    small = tmp_path / "small"
    small.write_bytes(b"tiny")
    assert "-" not in store.put_file("small", small).etag


def test_prefix_isolates_stores_in_one_bucket(s3_settings: Settings) -> None:
    a = S3BlobStore.from_settings(msgspec.structs.replace(s3_settings, s3_prefix="/tenant-a/"))
    b = S3BlobStore.from_settings(msgspec.structs.replace(s3_settings, s3_prefix="tenant-b"))
    a.put_bytes("k/1", b"a")
    b.put_bytes("k/1", b"b")
    assert _raw_keys(s3_settings) == ["tenant-a/k/1", "tenant-b/k/1"]
    assert list(a.list("")) == ["k/1"]
    assert a.get_bytes("k/1") == b"a"
    a.delete(["k/1"])
    assert b.get_bytes("k/1") == b"b"


def test_bad_prefix_rejected(s3_settings: Settings) -> None:
    with pytest.raises(InvalidIdentifier):
        S3BlobStore.from_settings(msgspec.structs.replace(s3_settings, s3_prefix="../up"))


def test_delete_in_batches(s3_settings: Settings) -> None:
    store = S3BlobStore.from_settings(s3_settings)
    store.delete_batch = 2  # exercise batching without writing 1,001 objects
    keys = [f"d/{i}" for i in range(5)]
    for key in keys:
        store.put_bytes(key, b".")
    store.delete([*keys, "d/missing"])
    assert list(store.list("d/")) == []


def test_list_paginates(s3_settings: Settings) -> None:
    store = S3BlobStore.from_settings(s3_settings)
    store.list_page_size = 2  # several ListObjectsV2 pages without writing 1,001 objects
    keys = [f"p/{i}" for i in (3, 1, 4, 0, 2)]
    for key in keys:
        store.put_bytes(key, b"")
    store.put_bytes("q/0", b"")
    assert list(store.list("p/")) == sorted(keys)


def test_ensure_bucket_is_idempotent(s3_settings: Settings) -> None:
    store = S3BlobStore.from_settings(msgspec.structs.replace(s3_settings,
                                                              s3_create_bucket=False))
    assert _buckets(s3_settings) == []  # the test's bucket is new
    store.ensure_bucket()
    assert _buckets(s3_settings) == [s3_settings.s3_bucket]
    store.put_bytes("kept", b"1")
    # Again (another process starting): the same one bucket, and what it holds stays.
    store.ensure_bucket()
    assert _buckets(s3_settings) == [s3_settings.s3_bucket]
    assert _raw_keys(s3_settings) == ["kept"]


def test_missing_bucket_without_autocreate_is_storage_error(s3_settings: Settings) -> None:
    store = S3BlobStore.from_settings(msgspec.structs.replace(s3_settings, s3_create_bucket=False))
    with pytest.raises(StorageError, match="NoSuchBucket"):
        store.put_bytes("x", b"1")
    with pytest.raises(StorageError):
        list(store.list(""))


def test_unreachable_endpoint_is_storage_error(s3_settings: Settings) -> None:
    dead = msgspec.structs.replace(
        s3_settings, s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_create_bucket=False
    )
    store = S3BlobStore.from_settings(dead)
    with pytest.raises(StorageError):
        store.get_bytes("x")
    with pytest.raises(StorageError):
        S3BlobStore.from_settings(msgspec.structs.replace(dead, s3_create_bucket=True))


def test_presigned_url_of_missing_object_is_404(s3_settings: Settings) -> None:
    store = S3BlobStore.from_settings(s3_settings)
    url = store.presign("never/written", 60)
    assert url is not None
    assert httpx.get(url, timeout=10.0).status_code == 404
    with pytest.raises(BlobNotFound):
        store.get_bytes("never/written")


def test_presigned_url_is_signed_and_scoped(s3_settings: Settings) -> None:
    store = S3BlobStore.from_settings(s3_settings)
    store.put_bytes("secret/obj", b"payload")
    url = store.presign("secret/obj", 120)
    assert url is not None
    assert "X-Amz-Expires=120" in url
    assert "X-Amz-Signature=" in url
    assert f"/{s3_settings.s3_bucket}/secret/obj" in url


# --- socket hand-over (open_socket): what the API splices ----------------------------------




@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(min_value=0, max_value=300_000 - 1),
       length=st.integers(min_value=1, max_value=300_000))
def test_open_socket_hands_over_exactly_the_range(s3_settings: Settings, start: int,
                                                  length: int) -> None:
    # Through urllib3/http.client internals: these must still be what they were (else the
    # store gives blocks, and the API streams): the head is what http.client buffered, the
    # socket holds the rest and nothing more; the store keeps answering afterwards.
    store = open_blob_store(s3_settings)
    assert isinstance(store, SocketReads) and store.splices()
    data = bytes(range(256)) * 1200  # 307,200 bytes
    store.put_bytes("splice/obj", data)
    stop = min(len(data), start + length)
    got = store.open_socket("splice/obj", start, stop)
    assert isinstance(got, SocketRange)
    assert got.length == stop - start and len(got.head) <= got.length
    assert drain(got) == data[start:stop]
    got.close(complete=True)
    cut = store.open_socket("splice/obj", 0, len(data))
    assert isinstance(cut, SocketRange)
    cut.close(complete=False)  # mid-body: its connection is closed, never reused
    assert store.get_bytes("splice/obj") == data


def test_open_socket_of_a_missing_key_raises_at_the_call(s3_settings: Settings) -> None:
    store = open_blob_store(s3_settings)
    assert isinstance(store, SocketReads)
    with pytest.raises(BlobNotFound):
        store.open_socket("splice/missing", 0, 10)


def test_https_endpoints_are_not_spliced(s3_settings: Settings) -> None:
    # TLS bytes must be decrypted in Python: the API streams them (no request is made here).
    store = S3BlobStore(s3_settings.s3_bucket, endpoint_url="https://127.0.0.1:9",
                        access_key_id="testing", secret_access_key="testing")
    assert not store.splices()
