"""The one place configuration is read.

``Settings`` is filled from ``FEEDSERVER_*`` environment variables, optionally on top of a TOML
file named by ``FEEDSERVER_CONFIG``. Nothing else in the package reads ``os.environ``; every
component receives the ``Settings`` (or the values it needs) from its caller. Every field is
documented in README.md, and a test keeps the two in step.

``mode`` is the single switch from embedded to distributed: with ``mode = "distributed"`` the
blob store defaults to S3, the database to PostgreSQL and the event log to Kafka; each store
can still be overridden on its own.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

PREFIX = "FEEDSERVER_"


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # --- deployment ------------------------------------------------------------------------
    mode: Literal["embedded", "distributed"] = "embedded"
    data_dir: str = "var"
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    public_url: str = "http://127.0.0.1:8080"

    # --- blob store --------------------------------------------------------------------------
    blob_backend: Literal["filesystem", "s3", "auto"] = "auto"
    s3_bucket: str = "feedserver"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_multipart_threshold: int = 16 * 1024 * 1024
    s3_multipart_chunksize: int = 16 * 1024 * 1024
    s3_redirect_downloads: bool = False
    s3_create_bucket: bool = True
    presign_seconds: int = 300

    # --- database ----------------------------------------------------------------------------
    database_url: str | None = None

    # --- events ------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = None
    kafka_fetch_wait_ms: int = 20
    kafka_catch_up_fetch_wait_ms: int = 500
    eventlog_poll_seconds: float = 0.05
    event_topics: list[str] = msgspec.field(
        default_factory=lambda: ["mediawiki.page_change.v1", "mediawiki.page_content_change.v1"]
    )
    consumer_group: str = "feedserver"
    article_topic: str = "feedserver.articles"
    article_partitions: int = 50  # WME: 50 partitions, 10 parts of 5
    dead_letter_topic: str = "feedserver.dead-letter"
    usage_topic: str = "feedserver.usage"
    content_source_url: str | None = None
    content_concurrency: int = 2
    content_maxlag: int = 5
    content_cache_revisions: int = 10_000
    user_agent: str = "feedserver/0.1 (set FEEDSERVER_USER_AGENT to name your service and contact)"
    eventstreams_url: str = "https://stream.wikimedia.org"
    eventstreams_streams: list[str] = msgspec.field(
        default_factory=lambda: ["mediawiki.recentchange"])
    eventstreams_wikis: list[str] = msgspec.field(default_factory=list)
    eventstreams_topic: str = "feedserver.eventstreams"
    eventstreams_timeout: float = 60.0
    realtime_max_subscriber_lag: int = 10_000
    realtime_buffer_bytes: int = 64 * 1024 * 1024
    stream_lease_seconds: float = 30.0
    ondemand_cache_bytes: int = 64 * 1024 * 1024
    ondemand_cache_seconds: float = 60.0
    batch_retention_hours: int = 48

    # --- snapshots ---------------------------------------------------------------------------
    chunk_size: int = 64 * 1024 * 1024
    zstd_level: int = 3
    retention_versions: int = 7
    ingest_workers: int = 1
    default_wiki: str = "simplewiki"
    # WME's archive format (``<id>.tar.gz``, ``chunk_<k>.tar.gz``) built beside the zstd chunks
    # of every snapshot version and hourly batch; the default download on WME paths.
    wme_archives: bool = True
    wme_gzip_level: int = 6
    # Parquet shards beside the chunks of every new version (and of its diff): off by default,
    # as they add build time (the clean text) and storage (text + wikitext); docs/formats.md.
    parquet_enabled: bool = False
    parquet_shard_size: int = 256 * 1024 * 1024
    parquet_row_group_size: int = 32 * 1024 * 1024
    # Namespaces whose snapshots also get a Structured Contents version, built from the same
    # records in the same pass (``snapshot build``, ``diff advance``); [] = none.
    structured_namespaces: list[int] = msgspec.field(default_factory=lambda: [0])

    # --- accounts and tokens -----------------------------------------------------------------
    token_secret: str | None = None
    access_token_ttl: int = 24 * 3600
    refresh_token_ttl: int = 90 * 24 * 3600
    refresh_token_max_uses: int = 90
    max_body_bytes: int = 1024 * 1024
    # CORS as WME sends it: ["*"] = any origin; a list = those origins; [] = off.
    cors_allow_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    login_free_failures: int = 5
    login_address_free_failures: int = 20
    login_max_delay: float = 900.0
    login_concurrent_hashes: int = 2

    # --- metering ----------------------------------------------------------------------------
    metering_enabled: bool = True
    ledger_batch_size: int = 500
    ledger_flush_seconds: float = 0.2
    # Where the embedded ledger's appends run: a child process beside the event loop, or a
    # worker thread of the API process (docs/metering.md, "The ledger appender process").
    ledger_appender: Literal["process", "thread"] = "process"
    # "batch": the appender process books a delivered batch as one row per group of responses
    # and meter, the lines kept as the batch's evidence; "response": each response's meters
    # are rows (docs/metering.md, "Rows per batch").
    ledger_granularity: Literal["response", "batch"] = "batch"
    usage_checkpoint_bytes: int = 4 * 1024 * 1024
    usage_checkpoint_seconds: float = 5.0
    usage_grace_hours: int = 72  # a month stays open this long after it ends (late records)
    usage_export_url: str | None = None
    usage_export_token: str | None = None
    usage_export_batch_size: int = 100
    usage_export_retries: int = 5

    # --- derived -----------------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def blob_store_kind(self) -> Literal["filesystem", "s3"]:
        if self.blob_backend != "auto":
            return self.blob_backend
        return "s3" if self.mode == "distributed" else "filesystem"

    @property
    def blob_root(self) -> Path:
        return self.data_path / "blobs"

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        if self.mode == "distributed":
            return "postgresql://feedserver@127.0.0.1:5432/feedserver"
        return f"sqlite:///{self.data_path / 'feedserver.db'}"

    @property
    def events_backend(self) -> Literal["embedded", "kafka"]:
        return "kafka" if self.kafka_bootstrap_servers else "embedded"


_FIELDS = {f.name: f.type for f in msgspec.structs.fields(Settings)}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(PREFIX) or key == PREFIX + "CONFIG":
            continue
        name = key[len(PREFIX) :].lower()
        if name not in _FIELDS:
            raise ValueError(f"unknown setting {key}")
        if "list[" in str(_FIELDS[name]):
            out[name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            out[name] = raw
    return out


def load_settings(
    env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Settings from an optional TOML file, then the environment, then explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = env.get(PREFIX + "CONFIG")
    if config_file:
        with open(config_file, "rb") as fh:
            values.update(tomllib.load(fh))
    values.update(_from_env(env))
    values.update(overrides)
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid configuration: {exc}") from exc
