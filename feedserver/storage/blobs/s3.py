"""S3 implementation of the ``BlobStore`` protocol (the distributed blob store).

Works against AWS S3 and S3-compatible servers (moto_server in tests, MinIO, Ceph): when an
``endpoint_url`` is set, path-style addressing is used because such servers rarely resolve
bucket sub-domains. Atomicity comes from S3 itself: a PUT, or a multipart upload that is
completed only after every part arrived (boto3's managed transfer aborts it on failure), is
visible whole or not at all.

botocore/boto3 exceptions are translated here into ``BlobNotFound`` / ``StorageError`` and never
leave this module.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from feedserver.errors import BlobNotFound, StorageError
from feedserver.storage.blobs.base import READ_BLOCK, BlobInfo, SocketRange, check_key
from feedserver.storage.blobs.s3_socket import SPLICE, socket_range

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from feedserver.config import Settings

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})
_VENDOR_ERRORS = (ClientError, BotoCoreError, Boto3Error)


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    inner = exc.__cause__ or exc.__context__
    return _code(inner) if isinstance(inner, BaseException) else ""


def _raise(exc: BaseException, key: str | None, action: str) -> NoReturn:
    """Translate a vendor exception: a missing object is ``BlobNotFound``, the rest storage."""
    if key is not None and _code(exc) in _MISSING_CODES:
        raise BlobNotFound(key) from None
    what = f" {key!r}" if key is not None else ""
    raise StorageError(f"s3: cannot {action}{what}: {exc}") from None


def _nothing() -> Generator[bytes, None, None]:
    yield from ()


def _normalise_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    return check_key(stripped) + "/" if stripped else ""


class S3BlobStore:
    """Blobs as objects in one bucket, optionally under a key prefix."""

    # DeleteObjects accepts at most 1000 keys per request; ListObjectsV2 returns at most 1000.
    delete_batch = 1000
    list_page_size = 1000

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = 16 * 1024 * 1024,
        multipart_chunksize: int = 16 * 1024 * 1024,
    ) -> None:
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.region = region
        config = Config(
            region_name=region,
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Response checksums only where a read asks for them (``get_bytes``: whole
            # objects). A ranged read has none on S3 (it answers a range without its object's
            # checksum), and botocore's CRC32 of a streamed download cost the server more CPU
            # than moving the bytes; a chunk's bytes are checked end to end against the
            # sha256 of its manifest (the download's ETag and Digest).
            response_checksum_validation="when_required",
        )
        # A session per store: sessions are not thread-safe, but the client made from it is,
        # so one client is shared by every thread of the process.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self.client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=4,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        store = cls(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            multipart_threshold=settings.s3_multipart_threshold,
            multipart_chunksize=settings.s3_multipart_chunksize,
        )
        if settings.s3_create_bucket:
            store.ensure_bucket()
        return store

    # --- bucket -------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (idempotent, safe against races)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except _VENDOR_ERRORS as exc:
            if _code(exc) not in _MISSING_BUCKET_CODES:
                _raise(exc, None, f"reach bucket {self.bucket!r}")
        try:
            if self.region == "us-east-1":
                self.client.create_bucket(Bucket=self.bucket)
            else:
                self.client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self.region},  # type: ignore[typeddict-item]
                )
        except _VENDOR_ERRORS as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                _raise(exc, None, f"create bucket {self.bucket!r}")

    # --- keys ---------------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _info(self, key: str, head: Any) -> BlobInfo:
        return BlobInfo(
            key=key,
            size=int(head["ContentLength"]),
            etag=str(head.get("ETag", "")).strip('"'),
            last_modified=head["LastModified"].timestamp(),
        )

    # --- writes -------------------------------------------------------------------------------
    def put_file(self, key: str, path: Path) -> BlobInfo:
        name = self._key(key)
        try:
            # Managed transfer: multipart above the threshold, parts in parallel, and the
            # upload aborted (nothing visible) if any part fails.
            self.client.upload_file(str(path), self.bucket, name, Config=self.transfer)
        except OSError as exc:
            raise StorageError(f"cannot upload {key!r}: {exc.strerror or exc}") from None
        except _VENDOR_ERRORS as exc:
            _raise(exc, None, f"upload {key!r} to")
        return self.stat(key)

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        name = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except _VENDOR_ERRORS as exc:
            _raise(exc, None, f"put {key!r} into")
        return self.stat(key)

    def delete(self, keys: Iterable[str]) -> None:
        # Validate everything first so a hostile key deletes nothing.
        names = [self._key(key) for key in keys]
        for i in range(0, len(names), self.delete_batch):
            batch = names[i : i + self.delete_batch]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True},
                )
            except _VENDOR_ERRORS as exc:
                _raise(exc, None, "delete objects from")
            errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"s3: cannot delete {first.get('Key')!r}: {first.get('Message')}"
                    f" ({len(errors)} failed)"
                )

    # --- reads --------------------------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        name = self._key(key)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=name, ChecksumMode="ENABLED")
            with resp["Body"] as body:
                return body.read()
        except _VENDOR_ERRORS as exc:
            _raise(exc, key, "read")

    def open_range(self, key: str, start: int = 0,
                   end: int | None = None) -> Generator[bytes, None, None]:
        if end is not None and end <= start:
            self.stat(key)  # still report a missing object
            return _nothing()
        # The request is made now, not on first iteration, so BlobNotFound surfaces at the call.
        body = self._ranged_get(key, start, end)
        return _nothing() if body is None else self._stream(key, body)

    def _ranged_get(self, key: str, start: int, end: int | None) -> Any:
        """botocore's streaming body of ``[start, end)`` (``end`` None: to the object's end),
        or None when ``start`` is at or past the end (nothing to read)."""
        byte_range = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                          Range=byte_range)
        except _VENDOR_ERRORS as exc:
            if _code(exc) == "InvalidRange":
                return None
            _raise(exc, key, "read")
        return resp["Body"]

    def splices(self) -> bool:
        """Whether reads can hand over their socket: plain HTTP (an endpoint such as moto or
        MinIO in a private network; AWS is https), on Linux."""
        return SPLICE and self.client.meta.endpoint_url.startswith("http://")

    def open_socket(self, key: str, start: int, stop: int
                    ) -> SocketRange | Generator[bytes, None, None]:
        """``[start, stop)`` as the socket of its GET (``s3_socket``), or as blocks when this
        answer cannot be handed over."""
        body = self._ranged_get(key, start, stop)
        if body is None:
            return _nothing()
        try:
            handed = socket_range(body, stop - start)
        except OSError as exc:  # the first bytes did not come (timeout, reset)
            body.close()
            raise StorageError(f"s3: cannot read {key!r}: {exc}") from None
        return handed if handed is not None else self._stream(key, body)

    @staticmethod
    def _stream(key: str, body: Any) -> Generator[bytes, None, None]:
        try:
            with body:
                yield from body.iter_chunks(READ_BLOCK)
        except _VENDOR_ERRORS as exc:
            _raise(exc, key, "stream")

    def stat(self, key: str) -> BlobInfo:
        name = self._key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except _VENDOR_ERRORS as exc:
            _raise(exc, key, "stat")
        return self._info(key, head)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except BlobNotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        folder = prefix.rpartition("/")[0]
        if folder:
            check_key(folder)  # same rule as the filesystem store: no escaping the root
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(
                Bucket=self.bucket,
                Prefix=self.prefix + prefix,
                PaginationConfig={"PageSize": self.list_page_size},
            )
            for page in pages:
                keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        except _VENDOR_ERRORS as exc:
            _raise(exc, None, "list")
        return iter(sorted(keys))

    def presign(self, key: str, seconds: int,
                byte_range: tuple[int, int] | None = None) -> str | None:
        name = self._key(key)
        params = {"Bucket": self.bucket, "Key": name}
        if byte_range is not None:
            # A signed header (X-Amz-SignedHeaders=host;range): S3 answers the URL only with
            # this exact Range header, so it serves these bytes and nothing else.
            params["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        try:
            return self.client.generate_presigned_url("get_object", Params=params,
                                                      ExpiresIn=seconds)
        except _VENDOR_ERRORS as exc:
            _raise(exc, None, f"presign {key!r} in")

    def local_path(self, key: str) -> None:
        check_key(key)  # same contract as the filesystem store
        return None
