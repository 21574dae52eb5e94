"""Parquet shards of Structured Contents versions, and their texts for the article shards.

``build_structured_parquet`` writes the sealed Structured Contents chunks of one namespace
(read once more, zstd decompression, not the dump) as shards of ``structured_rows.SCHEMA``,
in chunk order, published under the version's ``parquet/`` folder with a ``ParquetSet``
whose ``schema`` is ``structured/1``. Nothing is parsed: the record holds its sections, and
the ``text`` column is ``plain_text(sections)``, the very function behind
``structured_content(...).text``, so the ``ParquetSet.text`` name (``shards.CLEANER``) holds.

``StructuredTexts`` lends those texts to the article shards of the same build: the sealed
Structured Contents of a namespace hold one record per article of its sealed article version,
in the same order (both are sealed from the same staged records by the same rule: highest
revision, later on a tie), so the two are read side by side. Each pair is checked (page id and
revision); a record that does not pair ends the reuse and the rest are parsed as before, so
the text is always the one ``shards.clean_text`` would give.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import msgspec

from feedserver.errors import IntegrityError
from feedserver.feeds.snapshots.chunks import iter_file_lines
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX
from feedserver.feeds.snapshots.parquet import BuiltParquet, ParquetOptions
from feedserver.feeds.snapshots.sealing import SealedSnapshot
from feedserver.feeds.snapshots.shards import SUFFIX, shard_identifier
from feedserver.feeds.snapshots.structured_rows import (
    FORMAT,
    StructuredColumns,
    structured_text,
)
from feedserver.formats.parquet import ParquetShardWriter
from feedserver.ingest.structured.blocks import plain_text
from feedserver.ingest.structured.records import Part, StructuredContent
from feedserver.models import Article

_DECODER = msgspec.json.Decoder(StructuredContent)


class _Revision(msgspec.Struct):
    identifier: int


class _TextProbe(msgspec.Struct):
    """What the text needs of a Structured Contents line (the rest is skipped unparsed)."""

    identifier: int
    version: _Revision | None = None
    sections: list[Part] | None = None


_PROBE = msgspec.json.Decoder(_TextProbe)


def sealed_lines(sealed: SealedSnapshot) -> Iterator[bytes]:
    """The lines of a sealed namespace's chunk files, in order."""
    for chunk in sealed.chunks:
        yield from iter_file_lines(Path(chunk.path))


def write_structured(lines: Iterable[bytes], *, identifier: str, namespace: int,
                     folder: Path, options: ParquetOptions,
                     namespaces: Mapping[int, str]) -> BuiltParquet:
    """Shards (``structured/1``) of the Structured Contents ``lines``, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = StructuredColumns(namespace)
    writer = ParquetShardWriter(
        folder, lambda k: shard_identifier(identifier, k) + SUFFIX,
        shard_size=options.shard_size, row_group_size=options.row_group_size,
        buffer=columns)
    try:
        for line in lines:
            content = _DECODER.decode(line)
            columns.add(content, line, structured_text(content))
            writer.row_added()
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    return BuiltParquet(folder, identifier, shards, namespaces=namespaces, options=options,
                        schema=FORMAT, prefix=STRUCTURED_PREFIX)


def build_structured_parquet(sealed: SealedSnapshot, *, identifier: str, folder: Path,
                             options: ParquetOptions, namespaces: Mapping[int, str]
                             ) -> BuiltParquet:
    """Shards of every record of the sealed Structured Contents ``sealed``, under ``folder``;
    ``namespaces``: the names the records were parsed with (recorded in the set)."""
    built = write_structured(sealed_lines(sealed), identifier=identifier,
                             namespace=sealed.namespace, folder=folder, options=options,
                             namespaces=namespaces)
    rows = sum(s.rows for s in built.shards)
    if rows != sealed.article_count:
        raise IntegrityError(f"{identifier}: {rows} Parquet rows for "
                             f"{sealed.article_count} Structured Contents records")
    return built


class StructuredTexts:
    """The clean texts of a sealed Structured Contents namespace, lent in article order
    (``parquet.KnownText``): ``self(article)`` is the next record's text when that record is
    the article's (same page id and revision), else None from then on."""

    def __init__(self, sealed: SealedSnapshot) -> None:
        self._lines: Iterator[bytes] | None = sealed_lines(sealed)
        self.reused = 0
        self.missed = 0

    def __call__(self, article: Article) -> str | None:
        if self._lines is not None:
            line = next(self._lines, None)
            probe = None if line is None else _PROBE.decode(line)
            revision = article.version.identifier if article.version is not None else 0
            if (probe is not None and probe.identifier == article.identifier
                    and (probe.version.identifier if probe.version else 0) == revision):
                self.reused += 1
                return plain_text(probe.sections or [])
            self._lines = None  # out of step: stop lending, parse the rest
        self.missed += 1
        return None
