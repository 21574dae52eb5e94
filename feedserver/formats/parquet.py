"""Parquet shards of a snapshot version (or of a diff), written in one streaming pass.

Records arrive once, in order; they are gathered column by column into row groups of about
``row_group_size`` (uncompressed, estimated in characters) and each full row group is written
at once, so memory holds one row group. A shard (``name(k)``) is closed before the row group
that would push it past ``shard_size``, judged from the compression ratio of the previous row
group; a shard passes ``shard_size`` only when a single row group does, or by the error of that
prediction. zstd compresses inside Parquet; pages carry CRC-32s; the SHA-256 and size of each
shard are taken as its bytes are written.

Byte stability: with the same input, options and pyarrow (Arrow C++, zstd) version, the bytes
are identical (nothing time- or host-dependent is written; the footer's ``created_by`` names
the pyarrow version). Another pyarrow version may encode differently, so a shard's SHA-256 is
a property of the published file, recorded in the manifest, not something to recompute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Protocol

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from feedserver.formats.checksums import Checksums, HashingWriter, verify_file
from feedserver.formats.parquet_rows import (
    DICTIONARY_COLUMNS,
    STATISTICS_COLUMNS,
    CleanText,
    Columns,
    Kind,
    wikitext_text,
)
from feedserver.models import Article, DiffEntry

DEFAULT_SHARD_SIZE = 256 * 1024 * 1024
# ~32 M characters of text per row group: a streaming reader holds one at a time; several per
# shard let range readers fetch one column of one row group.
DEFAULT_ROW_GROUP_SIZE = 32 * 1024 * 1024
ZSTD_LEVEL = 3
_FIRST_RATIO = 0.5  # compressed bytes per estimated byte, before any row group was measured
_FOOTER_PER_ROW_GROUP = 4096  # reserve for each row group's entry in the footer


class RowBuffer(Protocol):
    """Rows gathered column by column until they become one row group: ``table`` returns
    them (and clears the buffer). ``weight`` is its size estimate (characters of the string
    columns). Article and diff rows are ``parquet_rows.Columns``; other row kinds (Structured
    Contents) bring their own."""

    @property
    def schema(self) -> pa.Schema: ...
    @property
    def rows(self) -> int: ...
    @property
    def weight(self) -> int: ...
    def table(self) -> pa.Table: ...


class ShardInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One written shard, as a manifest records it."""

    name: str
    rows: int
    row_groups: int
    checksums: Checksums  # size and SHA-256 of the file


def shard_name(identifier: str, index: int) -> str:
    return f"{identifier}_shard_{index}.parquet"


class _Shard:
    def __init__(self, path: Path, schema: pa.Schema, level: int, cdc: bool) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.sink = HashingWriter(self.file)
        self.writer = pq.ParquetWriter(
            self.sink, schema, compression="zstd", compression_level=level,
            use_dictionary=[c for c in DICTIONARY_COLUMNS if c in schema.names],
            write_statistics=[c for c in STATISTICS_COLUMNS if c in schema.names],
            write_page_checksum=True, store_schema=True,
            use_content_defined_chunking=cdc)
        self.rows = 0
        self.row_groups = 0

    def size(self) -> int:
        return self.sink.tell()

    def close(self) -> ShardInfo:
        self.writer.close()
        self.file.close()
        return ShardInfo(name=self.path.name, rows=self.rows, row_groups=self.row_groups,
                         checksums=self.sink.digest.result())

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.file.close()


class ParquetShardWriter:
    """Write articles (``kind="articles"``, ``add``) or diff entries (``kind="diff"``,
    ``add_entry``) to shards ``folder / name(k)``; ``close`` lists them in order. Other row
    kinds pass their own ``buffer``, fill it and call ``row_added`` after each row."""

    def __init__(self, folder: Path, name: Callable[[int], str], *, kind: Kind = "articles",
                 clean_text: CleanText = wikitext_text,
                 shard_size: int = DEFAULT_SHARD_SIZE,
                 row_group_size: int = DEFAULT_ROW_GROUP_SIZE, level: int = ZSTD_LEVEL,
                 content_defined_chunking: bool = False,
                 buffer: RowBuffer | None = None) -> None:
        if shard_size < 1 or row_group_size < 1:
            raise ValueError("shard_size and row_group_size must be positive")
        self.folder = folder
        self.name = name
        self.kind: Kind = kind
        self.clean_text = clean_text
        self.shard_size = shard_size
        self.row_group_size = row_group_size
        self.level = level
        self.cdc = content_defined_chunking
        self._articles: Columns | None = None
        if buffer is None:
            buffer = self._articles = Columns(kind)
        self._columns: RowBuffer = buffer
        self._shard: _Shard | None = None
        self._ratio = _FIRST_RATIO
        self.shards: list[ShardInfo] = []

    def add(self, article: Article, line: bytes | None = None, *,
            text: str | None = None) -> None:
        """Append an article; ``line``: its NDJSON line as stored (hashed for
        ``article_sha256``; re-encoded from ``article`` when not given); ``text``: its clean
        text when already computed (elsewhere, in parallel), else ``clean_text(article)``."""
        if self.kind != "articles" or self._articles is None:
            raise ValueError("a diff writer takes entries (add_entry)")
        self._articles.add_article(article, self.clean_text(article) if text is None else text,
                                  line=line)
        self._maybe_flush()

    def add_entry(self, entry: DiffEntry, line: bytes | None = None) -> None:
        """Append a diff entry; ``line``: the added/updated article's NDJSON line."""
        if self.kind != "diff" or self._articles is None:
            raise ValueError("an article writer takes articles (add)")
        self._articles.add_entry(entry, self.clean_text, line=line)
        self._maybe_flush()

    def add_all(self, articles: Iterable[Article]) -> None:
        for article in articles:
            self.add(article)

    def row_added(self) -> None:
        """A row went into the caller's ``buffer``: write the row group once it is full."""
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if self._columns.weight >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        if not self._columns.rows:
            return
        weight = self._columns.weight
        predicted = int(weight * self._ratio) + _FOOTER_PER_ROW_GROUP
        shard = self._shard
        if shard is not None and shard.row_groups and (
                shard.size() + predicted + _FOOTER_PER_ROW_GROUP * shard.row_groups
                > self.shard_size):
            self.shards.append(shard.close())
            shard = self._shard = None
        if shard is None:
            path = self.folder / self.name(len(self.shards))
            shard = self._shard = _Shard(path, self._columns.schema, self.level, self.cdc)
        table = self._columns.table()
        before = shard.size()
        shard.writer.write_table(table, row_group_size=table.num_rows)
        shard.rows += table.num_rows
        shard.row_groups += 1
        # Take the worse of the last two ratios: one well-compressing group must not make the
        # next prediction too small.
        ratio = (shard.size() - before) / max(1, weight)
        self._ratio = max(ratio, (ratio + self._ratio) / 2)

    def close(self) -> list[ShardInfo]:
        self._flush()
        if self._shard is not None:
            self.shards.append(self._shard.close())
            self._shard = None
        return list(self.shards)

    def abort(self) -> None:
        if self._shard is not None:
            self._shard.abort()
            self._shard = None


def verify_shard(path: Path, shard: ShardInfo) -> None:
    """Raise ``IntegrityError`` unless the file is the shard the manifest describes."""
    verify_file(path, shard.checksums)


def write_shards(articles: Iterable[Article], folder: Path, identifier: str, *,
                 clean_text: CleanText = wikitext_text,
                 shard_size: int = DEFAULT_SHARD_SIZE) -> list[ShardInfo]:
    """Convenience: every article of a version to ``{identifier}_shard_{k}.parquet``."""
    writer = ParquetShardWriter(folder, lambda k: shard_name(identifier, k),
                                clean_text=clean_text, shard_size=shard_size)
    try:
        writer.add_all(articles)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
