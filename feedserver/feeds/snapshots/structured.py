"""Structured Contents snapshots, made from the records an article build streams anyway.

``StructuredStaging`` is the staging ``TeeFactory`` of a build: in the process that stages a
part (a worker, with ``workers > 1``), each article of a chosen namespace is parsed once by
``ingest.structured.structured_content`` and its ``StructuredContent`` record written to zstd
chunks of its own, indexed like the articles (``staging.SCHEMA``) in a SQLite file per part,
with the parse outcome counted per namespace. No second pass over the dump, no record kept in
memory.

``publish_structured`` then merges the parts, seals (one record per page id, the highest
revision, exactly as the article build decides) and publishes each namespace under
``structured-contents/`` with the same atomic publication, checksums and content root hash as
article snapshots, plus ``Manifest.structured`` (the article version built alongside, pages
parsed, degraded, problems). Parse failures never stop a build: a page whose wikitext is broken
still gets a record, and is counted (``metrics.structured_pages`` / ``structured_problems``).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import msgspec

from feedserver.config import Settings
from feedserver.feeds.snapshots import sealing, staging, wme
from feedserver.feeds.snapshots.chunks import ChunkWriter
from feedserver.feeds.snapshots.extras import Extra, parquet_options
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest, StructuredInfo
from feedserver.feeds.snapshots.publish import publish
from feedserver.feeds.snapshots.structured_parquet import build_structured_parquet
from feedserver.identifiers import snapshot_identifier
from feedserver.ingest.dump import DumpInfo
from feedserver.ingest.structured import StructuredResult, structured_content
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.storage.blobs import BlobStore

FOLDER = "structured"  # inside a build's scratch folder: its own chunk files and databases
_BATCH = 5000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS structured_stats (
    ns INTEGER NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS structured_degraded (
    part INTEGER NOT NULL, ns INTEGER NOT NULL, seq INTEGER NOT NULL, line INTEGER NOT NULL,
    problems TEXT NOT NULL
);
"""
_PAGES = "INSERT INTO pages (part, ns, seq, line, id, rev, name) VALUES (?,?,?,?,?,?,?)"
PARSED, DEGRADED = "parsed", "degraded"  # stat names; problems are "problem:<kind>"


class Outcome:
    """Pages parsed, degraded and problems met, per namespace (what the metrics count)."""

    def __init__(self) -> None:
        self.counts: dict[int, Counter[str]] = {}

    def add(self, ns: int, result: StructuredResult) -> None:
        counts = self.counts.setdefault(ns, Counter())
        counts[PARSED] += 1
        if result.degraded:
            counts[DEGRADED] += 1
            for problem in set(result.problems):
                counts[f"problem:{problem}"] += 1

    def rows(self) -> list[tuple[int, str, int]]:
        return [(ns, name, n) for ns, counts in sorted(self.counts.items())
                for name, n in sorted(counts.items())]

    def count(self, metrics: Metrics | None, source: str) -> None:
        if metrics is None:
            return
        for counts in self.counts.values():
            degraded = counts[DEGRADED]
            metrics.structured_pages.labels(source, "ok").inc(counts[PARSED] - degraded)
            metrics.structured_pages.labels(source, "degraded").inc(degraded)
            for name, n in counts.items():
                if name.startswith("problem:"):
                    metrics.structured_problems.labels(source, name[8:]).inc(n)


def parse(article: Article, info: DumpInfo, outcome: Outcome) -> StructuredResult:
    """The Structured Contents of ``article``, its outcome counted."""
    result = structured_content(article, namespaces=info.namespaces)
    outcome.add(article.namespace.identifier, result)
    return result


def problems_text(result: StructuredResult) -> str:
    return ",".join(sorted(set(result.problems)))


class StructuredStaging(msgspec.Struct, frozen=True, kw_only=True):
    """What a build's parts need to stage Structured Contents (pickles to worker processes);
    calling it makes the ``RecordTee`` of one part."""

    folder: str
    namespaces: frozenset[int]
    chunk_size: int
    level: int

    @classmethod
    def of(cls, settings: Settings, scratch: Path) -> StructuredStaging | None:
        """None when ``settings.structured_namespaces`` is empty (no Structured Contents)."""
        if not settings.structured_namespaces:
            return None
        folder = scratch / FOLDER
        folder.mkdir(exist_ok=True)
        return cls(folder=str(folder), namespaces=frozenset(settings.structured_namespaces),
                   chunk_size=settings.chunk_size, level=settings.zstd_level)

    def part_db(self, part: int) -> Path:
        return Path(self.folder) / f"part{part}.sqlite"

    def __call__(self, info: DumpInfo, part: int) -> StructuredTee:
        return StructuredTee(self, info, part)


class StructuredTee:
    """Stages the Structured Contents of one part's articles (``staging.RecordTee``)."""

    def __init__(self, options: StructuredStaging, info: DumpInfo, part: int) -> None:
        self.namespaces = options.namespaces
        self.info = info
        self.part = part
        self.outcome = Outcome()
        self.conn = open_db(options.part_db(part))
        self.conn.execute("BEGIN")
        self.writer = ChunkWriter(Path(options.folder), chunk_size=options.chunk_size,
                                  level=options.level, prefix=f"s{part}")
        self.pages: list[tuple[int, int, int, int, int, int, str]] = []
        self.degraded: list[tuple[int, int, int, int, str]] = []

    def add(self, article: Article) -> None:
        ns = article.namespace.identifier
        if ns not in self.namespaces:
            return
        result = parse(article, self.info, self.outcome)
        seq, line, _ = self.writer.add(ns, result.content)
        rev = article.version.identifier if article.version is not None else 0
        self.pages.append((self.part, ns, seq, line, article.identifier, rev, article.name))
        if result.degraded:
            self.degraded.append((self.part, ns, seq, line, problems_text(result)))
        if len(self.pages) >= _BATCH:
            self.conn.executemany(_PAGES, self.pages)
            self.pages.clear()

    def close(self) -> None:
        try:
            self.conn.executemany(_PAGES, self.pages)
            self.conn.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?)", [
                (self.part, c.namespace, c.seq, c.path, c.hashes_path, c.article_count,
                 c.uncompressed_size) for c in self.writer.close()])
            self.conn.executemany("INSERT INTO structured_stats VALUES (?,?,?)",
                                  self.outcome.rows())
            self.conn.executemany("INSERT INTO structured_degraded VALUES (?,?,?,?,?)",
                                  self.degraded)
            self.conn.execute("COMMIT")
        finally:
            self.conn.close()

    def abort(self) -> None:
        self.writer.abort()
        try:
            self.conn.execute("ROLLBACK")
        finally:
            self.conn.close()


def open_db(path: Path) -> sqlite3.Connection:
    conn = staging.open_db(path)
    conn.executescript(_SCHEMA)
    return conn


def _merge(conn: sqlite3.Connection, part_db: Path) -> None:
    conn.execute("ATTACH DATABASE ? AS part", (str(part_db),))
    try:
        conn.execute("BEGIN")
        for table in ("pages", "chunks", "structured_stats", "structured_degraded"):
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM part.{table}")
        conn.execute("COMMIT")
    finally:
        conn.execute("DETACH DATABASE part")


def _outcome(conn: sqlite3.Connection) -> Outcome:
    outcome = Outcome()
    for ns, name, n in conn.execute(
            "SELECT ns, name, sum(count) FROM structured_stats GROUP BY ns, name"):
        outcome.counts.setdefault(int(ns), Counter())[str(name)] = int(n)
    return outcome


def version_info(conn: sqlite3.Connection, ns: int, *, parsed: int,
                 article_version: int | None) -> StructuredInfo:
    """What the manifest says of the pages in the sealed version (``sealing.prepare`` ran):
    the degraded ones among the records kept, and their problems."""
    degraded = 0
    problems: Counter[str] = Counter()
    for (text,) in conn.execute(
            "SELECT d.problems FROM structured_degraded AS d JOIN pages AS p "
            "ON p.part = d.part AND p.ns = d.ns AND p.seq = d.seq AND p.line = d.line "
            "WHERE d.ns = ? AND p.dead = 0", (ns,)):
        degraded += 1
        problems.update(p for p in str(text).split(",") if p)
    return StructuredInfo(article_version=article_version, parsed=parsed, degraded=degraded,
                          problems=dict(sorted(problems.items())))


def merge_parts(options: StructuredStaging, parts: Iterable[int], *,
                metrics: Metrics | None = None) -> sqlite3.Connection:
    """The index of every staged part, merged (the caller closes it); the parse outcome
    counted in ``metrics``."""
    folder = Path(options.folder)
    conn = open_db(folder / "index.sqlite")
    try:
        for part in parts:
            if options.part_db(part).is_file():
                _merge(conn, options.part_db(part))
        _outcome(conn).count(metrics, "build")
    except BaseException:
        conn.close()
        raise
    return conn


def publish_structured(
    options: StructuredStaging, parts: Iterable[int], blobs: BlobStore, settings: Settings,
    info: DumpInfo, sources: list[DumpInfo], articles: list[Manifest], *,
    mapper: sealing.Mapper | None = None, metrics: Metrics | None = None,
) -> list[Manifest]:
    """Merge the staged parts, seal and publish one Structured Contents version per
    namespace; ``articles`` are the article versions built from the same records."""
    conn = merge_parts(options, parts, metrics=metrics)
    try:
        return seal_and_publish(conn, Path(options.folder), blobs, settings, info, sources,
                                {m.namespace.identifier: m.version for m in articles},
                                mapper=mapper)
    finally:
        conn.close()


def seal_all(conn: sqlite3.Connection, folder: Path, settings: Settings, *,
             mapper: sealing.Mapper | None = None) -> dict[int, sealing.SealedSnapshot]:
    """Seal every namespace staged in ``conn`` (chunks in ``folder``), not yet published."""
    sealing.prepare(conn)
    return {ns: sealing.seal_namespace(conn, ns, folder, level=settings.zstd_level,
                                       dropped=0, mapper=mapper)
            for ns in sealing.namespaces(conn)}


def publish_sealed(
    conn: sqlite3.Connection, sealed_all: dict[int, sealing.SealedSnapshot], folder: Path,
    blobs: BlobStore, settings: Settings, info: DumpInfo, sources: list[DumpInfo],
    article_versions: dict[int, int], *, events_until: datetime | None = None,
    parsed: dict[int, int] | None = None,
) -> list[Manifest]:
    """Publish the namespaces ``seal_all`` sealed, with their WME tar.gz parts when
    ``settings.wme_archives`` and their Parquet shards when ``settings.parquet_enabled``.
    ``parsed``: pages parsed per namespace for this version (default: all it holds)."""
    manifests = []
    for ns, sealed in sealed_all.items():
        identifier = snapshot_identifier(info.wiki, ns)
        extras: list[Extra] = []
        if settings.wme_archives and sealed.chunks:
            # WME serves Structured Contents snapshots as tar.gz too: parts as for articles.
            extras.append(wme.build_parts(sealed, identifier, folder,
                                          level=settings.wme_gzip_level,
                                          prefix=STRUCTURED_PREFIX))
        if settings.parquet_enabled and sealed.chunks:
            extras.append(build_structured_parquet(
                sealed, identifier=identifier, folder=folder / f"parquet_{ns}",
                options=parquet_options(settings), namespaces=info.namespaces))
        count = sealed.article_count if parsed is None else parsed.get(ns, 0)
        manifests.append(publish(
            blobs, sealed, identifier=identifier, info=info,
            sources=sources, lock_dir=settings.data_path / "locks",
            retention=settings.retention_versions, prefix=STRUCTURED_PREFIX,
            structured=version_info(conn, ns, parsed=count,
                                    article_version=article_versions.get(ns)),
            events_until=events_until, extras=extras,
        ))
    return manifests


def seal_and_publish(
    conn: sqlite3.Connection, folder: Path, blobs: BlobStore, settings: Settings,
    info: DumpInfo, sources: list[DumpInfo], article_versions: dict[int, int], *,
    mapper: sealing.Mapper | None = None, events_until: datetime | None = None,
    parsed: dict[int, int] | None = None,
) -> list[Manifest]:
    """Seal and publish every namespace staged in ``conn`` (chunks in ``folder``).
    ``parsed``: pages parsed per namespace for this version (default: all it holds)."""
    sealed_all = seal_all(conn, folder, settings, mapper=mapper)
    return publish_sealed(conn, sealed_all, folder, blobs, settings, info, sources,
                          article_versions, events_until=events_until, parsed=parsed)
