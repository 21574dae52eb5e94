"""Typed errors. Each carries its data and a class-level HTTP status; the API edge maps them to
RFC 9457 problem+json (``feedserver.api.problems``) and the CLI to a one-line message and exit 1.

Vendor exceptions (botocore, aiokafka, psycopg, mwxml) are translated into these where they
enter, inside the adapters, and never imported elsewhere.
"""

from __future__ import annotations


class FeedError(Exception):
    """Base of every expected error."""

    status: int = 500
    title: str = "Internal error"
    slug: str = "internal"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(FeedError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class InvalidParameter(FeedError):
    status = 422
    title = "Invalid parameter"
    slug = "invalid-parameter"


class Unauthorized(FeedError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(FeedError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(FeedError):
    status = 404
    title = "Not found"
    slug = "not-found"


class NotAcceptable(FeedError):
    """A representation was asked for that this resource does not have (``?format=``)."""

    status = 406
    title = "Not acceptable"
    slug = "not-acceptable"


class Conflict(FeedError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class RangeNotSatisfiable(FeedError):
    status = 416
    title = "Range not satisfiable"
    slug = "range-not-satisfiable"


class PayloadTooLarge(FeedError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class QuotaExceeded(FeedError):
    status = 429
    title = "Quota exceeded"
    slug = "quota-exceeded"


class RateLimited(FeedError):
    status = 429
    title = "Too many requests"
    slug = "rate-limited"


class Unavailable(FeedError):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"


# --- domain errors -------------------------------------------------------------------------


class DumpError(BadRequest):
    """A dump could not be read: malformed, truncated, missing <siteinfo>, unsupported."""

    slug = "bad-dump"
    title = "Unreadable dump"


class InvalidIdentifier(InvalidParameter):
    """An identifier (snapshot, chunk, wiki, name) that fails validation; never touches storage."""

    slug = "invalid-identifier"


class SnapshotNotFound(NotFound):
    slug = "snapshot-not-found"

    def __init__(self, identifier: str, version: int | None = None) -> None:
        where = f" version {version}" if version is not None else ""
        super().__init__(f"snapshot {identifier!r}{where} not found", identifier=identifier)


class BlobNotFound(NotFound):
    slug = "blob-not-found"

    def __init__(self, key: str) -> None:
        super().__init__(f"blob {key!r} not found", key=key)


class StorageError(Unavailable):
    """The blob store, database or event log failed (translated from the vendor error)."""

    slug = "storage-error"


class LedgerAppenderFailed(StorageError):
    """The ledger appender process died, answered nonsense, did not answer in time, or its
    append failed: the usage writer retries (the records stay in the journal)."""

    slug = "ledger-appender-failed"


class UnstorableValue(FeedError):
    """The database refused a value (out of its integer range, a character it cannot hold):
    a property of the data, not an outage, so retrying cannot help. Raised by the database
    adapters; the events consumer dead-letters the event that carried it."""

    status = 422
    slug = "unstorable-value"
    title = "Value cannot be stored"


class IntegrityError(FeedError):
    """Checksums or the content root hash did not match: data was corrupted or tampered with."""

    status = 500
    slug = "integrity-error"
    title = "Integrity check failed"


class UpstreamError(Unavailable):
    """An outside service (EventStreams, a wiki's Action API) failed or answered nonsense."""

    slug = "upstream-error"
    title = "Upstream service failed"


class InvalidEvent(BadRequest):
    """An event that fails its schema: goes to the dead-letter store; consumption continues."""

    slug = "invalid-event"


class TooManyStreams(RateLimited):
    """The customer already holds the plan's ``max_streams`` open realtime streams."""

    slug = "too-many-streams"
    title = "Too many open streams"
