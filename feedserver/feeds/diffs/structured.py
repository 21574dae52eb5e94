"""The Structured Contents version N+1 beside ``advance_snapshot``'s article version N+1.

From the same spilled state-store changes (``changes.merged``): the Structured Contents of
version N are copied line by line, a changed page's record is parsed again from its new
article, a deleted page's record dropped, an added page's parsed. Only the changed pages are
parsed, so the cost follows the changes, not the wiki. When there is no Structured Contents
version made from article version N (never built, or built from another article version),
every page of article version N+1 is parsed instead, so the result is never stale.

The manifest's ``structured.parsed`` counts the pages parsed for this version, ``degraded``
and ``problems`` those of them whose wikitext was broken (the copied records are not parsed
again, so their outcome is the previous versions' business).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from feedserver.config import Settings
from feedserver.errors import SnapshotNotFound
from feedserver.feeds.diffs.changes import merged
from feedserver.feeds.snapshots.chunks import ARTICLE_DECODER, ChunkWriter
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest
from feedserver.feeds.snapshots.sealing import SealedSnapshot
from feedserver.feeds.snapshots.shards import CLEANER
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.feeds.snapshots.structured import (
    PARSED,
    Outcome,
    open_db,
    parse,
    problems_text,
    publish_sealed,
    seal_all,
)
from feedserver.feeds.snapshots.structured_parquet import StructuredTexts
from feedserver.formats.hashing import ENCODER
from feedserver.ingest.dump import DumpInfo
from feedserver.metrics import Metrics
from feedserver.storage.blobs import BlobStore

_BATCH = 1000
_PAGES = "INSERT INTO pages (part, ns, seq, line, id, rev, name) VALUES (?,?,?,?,?,?,?)"


class _Revision(msgspec.Struct):
    identifier: int


class _Probe(msgspec.Struct):
    """Just enough of a StructuredContent record to index it."""

    name: str
    identifier: int
    version: _Revision | None = None

    @property
    def revision(self) -> int:
        return 0 if self.version is None else self.version.identifier


_PROBE = msgspec.json.Decoder(_Probe)


def _page(line: bytes) -> tuple[int, int]:
    probe = _PROBE.decode(line)
    return probe.identifier, probe.revision


class _Parser:
    """Structured Contents lines from stored article records, outcome and problems kept."""

    def __init__(self, info: DumpInfo) -> None:
        self.info = info
        self.outcome = Outcome()
        self.problems: dict[int, str] = {}  # page id -> problems, until the line is staged

    def line(self, blob: bytes) -> bytes:
        article = ARTICLE_DECODER.decode(blob)
        result = parse(article, self.info, self.outcome)
        if result.degraded:
            self.problems[article.identifier] = problems_text(result)
        return ENCODER.encode(result.content)

    def replace(self, blob: bytes, _old: bytes) -> bytes:
        return self.line(blob)


def _previous(store: SnapshotStore, identifier: str) -> Manifest | None:
    try:
        return store.manifest(identifier)
    except SnapshotNotFound:
        return None


class Prepared:
    """The Structured Contents version N+1 sealed, not yet published: its sealed chunks can
    lend their clean texts to the article shards of N+1 (``texts``) before both are
    published; ``publish`` then names the article version and closes."""

    def __init__(self, conn: sqlite3.Connection, folder: Path, info: DumpInfo, ns: int,
                 sealed: dict[int, SealedSnapshot], parsed: int, lendable: bool) -> None:
        self.conn = conn
        self.folder = folder
        self.info = info
        self.ns = ns
        self.sealed = sealed
        self.parsed = parsed
        self.lendable = lendable

    def texts(self) -> StructuredTexts | None:
        """The texts for the article shards, when every record was parsed with the names
        those shards use (``lendable``)."""
        sealed = self.sealed.get(self.ns)
        return StructuredTexts(sealed) if sealed is not None and self.lendable else None

    def publish(self, blobs: BlobStore, settings: Settings, new: Manifest) -> Manifest | None:
        """Publish it as the Structured Contents of article version ``new``; None if empty."""
        published = publish_sealed(
            self.conn, self.sealed, self.folder, blobs, settings, self.info, [self.info],
            {self.ns: new.version}, events_until=new.events_until,
            parsed={self.ns: self.parsed})
        return published[0] if published else None

    def close(self) -> None:
        self.conn.close()


def prepare_structured(
    blobs: BlobStore, settings: Settings, changes: sqlite3.Connection, changed: set[int], *,
    base: Manifest, info: DumpInfo, names: dict[int, str], article_lines: Iterable[bytes],
    folder: Path, metrics: Metrics | None = None,
) -> Prepared:
    """Stage and seal the Structured Contents version made from article version N+1 (``base``
    plus the ``changes`` spilled by ``advance_snapshot``; ``article_lines``: N+1's sealed
    article lines, read only when every page must be parsed). Pages are parsed with
    ``names``, the namespace names the article shards of N+1 use."""
    folder.mkdir(exist_ok=True)
    store = SnapshotStore(blobs, STRUCTURED_PREFIX)
    info = msgspec.structs.replace(info, namespaces=dict(names))
    parser = _Parser(info)
    previous = _previous(store, base.identifier)
    lines: Iterator[bytes]
    if (previous is not None and previous.structured is not None
            and previous.structured.article_version == base.version):
        lines = merged(changes, store.iter_lines(previous), changed, page=_page,
                       replace=parser.replace, add=parser.line)
        # The copied records were parsed with the names their own shards record.
        lendable = (previous.parquet is not None and previous.parquet.text == CLEANER
                    and previous.parquet.namespaces == names)
    else:
        lines = (parser.line(line) for line in article_lines)
        lendable = True
    ns = base.namespace.identifier
    conn = open_db(folder / "index.sqlite")
    try:
        _stage(conn, lines, folder, ns, settings, parser.problems)
        parser.outcome.count(metrics, "advance")
        parsed = parser.outcome.counts.get(ns)
        sealed = seal_all(conn, folder, settings)
    except BaseException:
        conn.close()
        raise
    return Prepared(conn, folder, info, ns, sealed, parsed[PARSED] if parsed else 0, lendable)


def _stage(conn: sqlite3.Connection, lines: Iterator[bytes], folder: Path, ns: int,
           settings: Settings, problems: dict[int, str]) -> None:
    """Stage raw Structured Contents lines like ``structured.StructuredTee`` stages records."""
    writer = ChunkWriter(folder, chunk_size=settings.chunk_size, level=settings.zstd_level,
                         prefix="s0")
    pages: list[tuple[int, int, int, int, int, int, str]] = []
    degraded: list[tuple[int, int, int, int, str]] = []
    conn.execute("BEGIN")
    try:
        for line in lines:
            probe = _PROBE.decode(line)
            seq, number, _ = writer.add(ns, msgspec.Raw(line))
            pages.append((0, ns, seq, number, probe.identifier, probe.revision, probe.name))
            text = problems.pop(probe.identifier, None)
            if text:
                degraded.append((0, ns, seq, number, text))
            if len(pages) >= _BATCH:
                conn.executemany(_PAGES, pages)
                pages.clear()
        conn.executemany(_PAGES, pages)
        conn.executemany("INSERT INTO structured_degraded VALUES (?,?,?,?,?)", degraded)
        conn.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?)", [
            (0, c.namespace, c.seq, c.path, c.hashes_path, c.article_count,
             c.uncompressed_size) for c in writer.close()])
        conn.execute("COMMIT")
    except BaseException:
        writer.abort()
        conn.execute("ROLLBACK")
        raise
