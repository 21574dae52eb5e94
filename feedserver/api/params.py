"""Typed path parameters of the API, declared once: litestar validates each against its pattern
(a 422 problem when it does not match) and writes the pattern into the OpenAPI document, so a
client (or schemathesis) sees the same rule the server applies. The patterns are the rules of
``feedserver.identifiers``, written in the regex dialect JSON Schema shares with Python; the
handlers still run the strict checks (``\\Z`` anchors, ranges) behind them.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

_PROJECT = "[a-z][a-z0-9_]{0,62}"
_NAMESPACE = "(0|[1-9][0-9]{0,5})"
_SNAPSHOT = f"{_PROJECT}_namespace_{_NAMESPACE}"
SNAPSHOT_PATTERN = f"^{_SNAPSHOT}$"
CHUNK_PATTERN = f"^([0-9]{{1,7}}|{_SNAPSHOT}_chunk_(0|[1-9][0-9]{{0,6}}))$"
SHARD_PATTERN = f"^([0-9]{{1,7}}|{_SNAPSHOT}_shard_(0|[1-9][0-9]{{0,6}}))$"
PAIR_PATTERN = "^[1-9][0-9]{0,8}-[1-9][0-9]{0,8}$"
DATE_PATTERN = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
HOUR_PATTERN = "^([01][0-9]|2[0-3])$"
# A legal MediaWiki title (feedserver.identifiers.TITLE_PATTERN). "/" is allowed (subpages;
# on-demand's route takes the rest of the path, as WME's ``*name``), but not first: the router
# folds a leading "/" into the one before it.
TITLE_PATTERN = r"^(?![\s/])[^\x00-\x1f\x7f#<>\[\]|{}]{1,255}(?<!\s)$"

SnapshotId = Annotated[str, Parameter(
    pattern=SNAPSHOT_PATTERN, description="``{wiki}_namespace_{n}``, e.g. enwiki_namespace_0")]
ChunkId = Annotated[str, Parameter(
    pattern=CHUNK_PATTERN, description="A chunk index (0, 1, ...) or chunk identifier")]
ShardId = Annotated[str, Parameter(
    pattern=SHARD_PATTERN, description="A Parquet shard index (0, 1, ...) or shard identifier")]
Pair = Annotated[str, Parameter(
    pattern=PAIR_PATTERN, description="``{base}-{version}``: the diff from base to version")]
BatchDate = Annotated[str, Parameter(pattern=DATE_PATTERN, description="YYYY-MM-DD (UTC)")]
BatchHour = Annotated[str, Parameter(pattern=HOUR_PATTERN, description="00 to 23 (UTC)")]
# A ``{name:path}`` value reaches the handler with the route's leading "/", so litestar cannot
# match it against the pattern: the document states the rule and the handler applies it
# (``identifiers.check_title``, a 422 the same as litestar's).
ArticleName = Annotated[str, Parameter(
    schema_extra={"pattern": TITLE_PATTERN},
    description="An article title (spaces or underscores; may contain '/')")]
