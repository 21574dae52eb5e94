"""Stage a dump's records to local chunk files plus a disk-backed SQLite page index.

Memory stays flat whatever the dump size: records go straight to zstd chunk files, and what
sealing needs later (page id, revision, name and position of every article; every redirect)
goes to SQLite on disk in batches. One ``part`` per dump file; several parts can be staged in
worker processes (``stage_dump``) and merged into the parent's database (``merge_part``).

A ``RecordTee`` sees every article as it streams past (Structured Contents are staged that way,
``feeds.snapshots.structured``): what else a build makes of the records costs no second pass
over the dump, and runs in the same worker process as the part it belongs to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from feedserver.errors import DumpError
from feedserver.feeds.scratch import scratch_db
from feedserver.feeds.snapshots.chunks import ChunkWriter
from feedserver.ingest.dump import DumpInfo, read_dump
from feedserver.ingest.multistream import DumpSlice
from feedserver.models import Article, Redirect

_BATCH = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    part INTEGER NOT NULL, ns INTEGER NOT NULL, seq INTEGER NOT NULL, line INTEGER NOT NULL,
    id INTEGER NOT NULL, rev INTEGER NOT NULL, name TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS redirects (
    ns INTEGER NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, url TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    part INTEGER NOT NULL, ns INTEGER NOT NULL, seq INTEGER NOT NULL, path TEXT NOT NULL,
    hashes_path TEXT NOT NULL, article_count INTEGER NOT NULL, uncompressed_size INTEGER NOT NULL,
    PRIMARY KEY (part, ns, seq)
);
"""


class RecordTee(Protocol):
    """Sees each article a stage writes; closed when the stage commits, aborted if it fails."""

    def add(self, article: Article) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


# Makes the tee of one part from the dump's info and the part number. It goes to worker
# processes with the part, so it must pickle (a module-level class or a msgspec Struct).
TeeFactory = Callable[[DumpInfo, int], RecordTee]


class StageResult(msgspec.Struct, kw_only=True):
    part: int
    info: DumpInfo
    db_path: str  # the SQLite file holding this part's rows ("" when written to the caller's)
    articles: int
    redirects: int


def open_db(path: Path) -> sqlite3.Connection:
    conn = scratch_db(path)
    conn.executescript(SCHEMA)
    return conn


def stage_records(
    info: DumpInfo,
    records: Iterable[Article | Redirect],
    conn: sqlite3.Connection,
    folder: Path,
    *,
    part: int,
    chunk_size: int,
    level: int,
    tee: RecordTee | None = None,
) -> StageResult:
    """Write ``records`` to chunk files in ``folder`` and index them in ``conn``; ``tee``
    sees every article too."""
    writer = ChunkWriter(folder, chunk_size=chunk_size, level=level, prefix=f"p{part}")
    pages: list[tuple[int, int, int, int, int, int, str]] = []
    redirects: list[tuple[int, str, str, str | None]] = []
    articles = redirect_count = 0
    conn.execute("BEGIN")
    try:
        for record in records:
            if isinstance(record, Redirect):
                redirects.append((record.namespace, record.name, record.target, record.url))
                redirect_count += 1
                if len(redirects) >= _BATCH:
                    conn.executemany("INSERT INTO redirects VALUES (?,?,?,?)", redirects)
                    redirects.clear()
                continue
            ns = record.namespace.identifier
            seq, line, _ = writer.add(ns, record)
            if tee is not None:
                tee.add(record)
            rev = record.version.identifier if record.version is not None else 0
            pages.append((part, ns, seq, line, record.identifier, rev, record.name))
            articles += 1
            if len(pages) >= _BATCH:
                conn.executemany("INSERT INTO pages (part, ns, seq, line, id, rev, name) "
                                 "VALUES (?,?,?,?,?,?,?)", pages)
                pages.clear()
        conn.executemany("INSERT INTO pages (part, ns, seq, line, id, rev, name) "
                         "VALUES (?,?,?,?,?,?,?)", pages)
        conn.executemany("INSERT INTO redirects VALUES (?,?,?,?)", redirects)
        staged = writer.close()
        conn.executemany(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?)",
            [(part, c.namespace, c.seq, c.path, c.hashes_path, c.article_count,
              c.uncompressed_size) for c in staged],
        )
        if tee is not None:
            tee.close()
        conn.execute("COMMIT")
    except BaseException:
        writer.abort()
        if tee is not None:
            tee.abort()
        conn.execute("ROLLBACK")
        raise
    return StageResult(part=part, info=info, db_path="", articles=articles,
                       redirects=redirect_count)


def stage_dump(
    path: Path,
    folder: Path,
    *,
    part: int,
    chunk_size: int,
    level: int,
    wiki: str | None,
    namespaces: set[int] | None,
    db_path: Path | None = None,
    conn: sqlite3.Connection | None = None,
    piece: DumpSlice | None = None,
    tee: TeeFactory | None = None,
) -> StageResult:
    """Stage one dump file (or one ``piece`` of a multistream one); in a worker process pass
    ``db_path`` (a fresh SQLite file). ``tee`` makes the part's ``RecordTee``."""
    info, records = read_dump(path, wiki=wiki, namespaces=namespaces, part=piece)
    own = conn is None
    if conn is None:
        if db_path is None:
            raise ValueError("stage_dump needs db_path or conn")
        conn = open_db(db_path)
    try:
        result = stage_records(info, records, conn, folder, part=part, chunk_size=chunk_size,
                               level=level, tee=tee(info, part) if tee is not None else None)
    finally:
        records.close()
        if own:
            conn.close()
    if db_path is not None and own:
        result.db_path = str(db_path)
    return result


def merge_part(conn: sqlite3.Connection, result: StageResult) -> None:
    """Copy a worker's rows into the parent's database."""
    if not result.db_path:
        return
    conn.execute("ATTACH DATABASE ? AS part", (result.db_path,))
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO main.pages SELECT * FROM part.pages")
        conn.execute("INSERT INTO main.redirects SELECT * FROM part.redirects")
        conn.execute("INSERT INTO main.chunks SELECT * FROM part.chunks")
        conn.execute("COMMIT")
    finally:
        conn.execute("DETACH DATABASE part")


def check_same_wiki(results: Sequence[StageResult]) -> DumpInfo:
    """All parts must come from one wiki; returns the first part's info."""
    if not results:
        raise DumpError("no dump given")
    first = results[0].info
    for other in results[1:]:
        if other.info.wiki != first.wiki:
            raise DumpError(
                f"dumps are from different wikis: {first.wiki} ({first.source}) and "
                f"{other.info.wiki} ({other.info.source})"
            )
    return first
