"""Parquet shards as a manifest records them, and the clean text of their ``text`` column.

A snapshot version (``Manifest.parquet``) or a diff (``DiffManifest.parquet``) published with
Parquet lists its shards in a ``ParquetSet``: each shard's identifier ``{snapshot}_shard_{k}``,
blob key, rows, row groups, size and SHA-256, plus what the bytes depend on (the row schema,
the pyarrow version, the clean-text function and the namespace names it was given). The set is
optional in both manifests (``None``: built without Parquet), so manifests written before it
decode unchanged.

Blob layout, beside the chunks::

    snapshots/{identifier}/{version}/parquet/{identifier}_shard_{k}.parquet
    diffs/{identifier}/{base}-{version}/parquet/{identifier}_shard_{k}.parquet
    structured-contents/{identifier}/{version}/parquet/{identifier}_shard_{k}.parquet

Structured Contents versions have their own row schema (``structured/1``,
``feeds.snapshots.structured_rows``) in the same set, layout, serving and verification.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from feedserver import __version__
from feedserver.errors import NotFound
from feedserver.formats.parquet_rows import CleanText
from feedserver.identifiers import ascii_index, check_shard_identifier
from feedserver.ingest.structured import structured_content
from feedserver.models import Article

FOLDER = "parquet/"
SUFFIX = ".parquet"
MEDIA_TYPE = "application/vnd.apache.parquet"  # IANA, registered 2024
# Names the function behind the ``text`` column: the same name on two manifests means the same
# text for the same record (a diff's Parquet is only built when it matches its version's).
CLEANER = f"feedserver.ingest.structured.structured_content {__version__}"


class ParquetShard(msgspec.Struct, kw_only=True):
    """One Parquet file of a version or diff."""

    identifier: str  # {snapshot}_shard_{k}; the file is identifier + ".parquet"
    index: int
    key: str
    rows: int
    row_groups: int
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return self.identifier + SUFFIX


class ParquetSet(msgspec.Struct, kw_only=True):
    """The Parquet shards of one version (or diff), in row order."""

    schema: str  # the files' ``feedserver.format`` metadata: "articles/1", "diff/1", "structured/1"
    shards: list[ParquetShard]
    rows: int
    size: int
    pyarrow: str  # the writer's version: same input + same version = same bytes
    text: str  # the clean-text function (``CLEANER``)
    # The wiki's namespace names the cleaner was given (localized File:/Category: prefixes);
    # later versions and diffs reuse them so that equal records get equal text.
    namespaces: dict[int, str] = msgspec.field(default_factory=dict)
    shard_size: int = 0
    row_group_size: int = 0

    def shard(self, ref: str) -> ParquetShard | None:
        """A shard by index (ASCII digits) or identifier; identifiers are checked first
        (``InvalidIdentifier``)."""
        index = ascii_index(ref)
        if index is not None:
            return self.shards[index] if index < len(self.shards) else None
        check_shard_identifier(ref)
        return next((s for s in self.shards if s.identifier == ref), None)


def shard_identifier(identifier: str, index: int) -> str:
    return f"{identifier}_shard_{index}"


class ParquetNotBuilt(NotFound):
    """The version (or diff) exists but was published without Parquet shards."""

    slug = "parquet-not-built"
    title = "Parquet not built"

    def __init__(self, what: str, *, how: str, **extra: object) -> None:
        super().__init__(f"{what} was published without Parquet shards. {how}", how=how,
                         **extra)


def clean_text(namespaces: Mapping[int, str] | None = None) -> CleanText:
    """The ``text`` column's function: the article's clean text from Structured Contents
    (``structured_content(article).text``; pages that are not wikitext get "")."""
    names = dict(namespaces or {}) or None

    def text(article: Article) -> str:
        return structured_content(article, namespaces=names).text

    return text

