"""Seal staged chunks into final per-namespace chunk files.

Sealing (1) keeps one record per page id and namespace, the one with the highest
``version.identifier`` (the later one on a tie); (2) attaches each redirect to its target's
``redirects[]``, dropping redirects whose target is absent; (3) computes per-chunk and
whole-download SHA-256 and the content root hash. Only chunks holding a dropped duplicate or
a redirect target are decompressed and rewritten; the others are used as staged, with their
per-article hashes read from the staging sidecar.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec
import zstandard

from feedserver.feeds.snapshots.chunks import ARTICLE_DECODER, iter_file_lines, read_hashes
from feedserver.formats.checksums import checksum_file
from feedserver.formats.hashing import ENCODER, RootHasher, line_digest
from feedserver.models import Link

_READ = 1 << 20


class SealedChunk(msgspec.Struct, kw_only=True):
    path: str
    article_count: int
    size: int
    uncompressed_size: int
    sha256: str
    offset: int


class SealedSnapshot(msgspec.Struct, kw_only=True):
    namespace: int
    chunks: list[SealedChunk]
    article_count: int
    redirect_count: int
    redirects_dropped: int
    size: int
    uncompressed_size: int
    content_root_hash: str
    sha256: str


def prepare(conn: sqlite3.Connection) -> None:
    """Index the staged rows, mark superseded duplicates and match redirects to targets."""
    conn.executescript(
        """
        CREATE INDEX IF NOT EXISTS pages_id ON pages (ns, id);
        UPDATE pages SET dead = 1 WHERE EXISTS (
            SELECT 1 FROM pages AS q WHERE q.ns = pages.ns AND q.id = pages.id
            AND (q.rev > pages.rev OR (q.rev = pages.rev AND (q.part > pages.part
                 OR (q.part = pages.part AND q.rowid > pages.rowid)))));
        -- Per-chunk lookups of dropped lines without scanning every page.
        CREATE INDEX IF NOT EXISTS pages_dead ON pages (part, ns, seq) WHERE dead = 1;
        -- One row per redirect page even if several dump files list it.
        CREATE TABLE redirect_pages AS
            SELECT ns, name, max(target) AS target, max(url) AS url
            FROM redirects GROUP BY name;
        CREATE INDEX redirect_pages_target ON redirect_pages (target);
        CREATE TABLE attached AS
            SELECT p.part, p.ns, p.seq, p.line, r.name, r.url
            FROM pages AS p JOIN redirect_pages AS r ON r.target = p.name
            WHERE p.dead = 0;
        CREATE INDEX attached_chunk ON attached (part, ns, seq);
        """
    )


def namespaces(conn: sqlite3.Connection) -> list[int]:
    rows = conn.execute("SELECT DISTINCT ns FROM chunks ORDER BY ns").fetchall()
    return [int(r[0]) for r in rows]


def dropped_redirects(conn: sqlite3.Connection) -> dict[int, int]:
    """Redirects without a target among the articles, counted per redirect namespace."""
    rows = conn.execute(
        "SELECT ns, count(*) FROM redirect_pages "
        "WHERE name NOT IN (SELECT name FROM attached) GROUP BY ns"
    ).fetchall()
    return {int(ns): int(n) for ns, n in rows}


class RewriteJob(msgspec.Struct, frozen=True, kw_only=True):
    """One staged chunk to rewrite: small, so it can go to a worker process, which reads
    the lines to drop and the redirects to attach from the (read-only) database itself."""

    db_path: str
    part: int
    namespace: int
    seq: int
    src: str
    hashes: str
    dst: str


# Runs rewrite jobs, possibly in other processes; results in job order (like Executor.map).
Mapper = Callable[[Callable[[RewriteJob], tuple[int, int]], Iterable[RewriteJob]],
                  Iterable[tuple[int, int]]]


def seal_namespace(
    conn: sqlite3.Connection, ns: int, folder: Path, *, level: int, dropped: int,
    mapper: Mapper | None = None,
) -> SealedSnapshot:
    """Seal one namespace. ``mapper`` (e.g. a process pool's ``map``) rewrites the chunks
    that need it in parallel; without it they are rewritten here, one at a time."""
    chunks: list[SealedChunk] = []
    root = RootHasher(spill_dir=folder)
    whole = hashlib.sha256()
    offset = articles = uncompressed = 0
    rows = conn.execute(
        "SELECT part, seq, path, hashes_path, article_count, uncompressed_size FROM chunks "
        "WHERE ns = ? ORDER BY part, seq", (ns,)
    ).fetchall()
    redirect_count = int(conn.execute(
        "SELECT count(*) FROM attached WHERE ns = ?", (ns,)).fetchone()[0])
    db_path = _db_path(conn)
    jobs: list[RewriteJob] = []
    plan: list[tuple[str, str, int, int, RewriteJob | None]] = []
    for part, seq, path, hashes_path, count, size in rows:
        job = None
        if _needs_rewrite(conn, part, ns, seq):
            job = RewriteJob(db_path=db_path, part=part, namespace=ns, seq=seq, src=path,
                             hashes=hashes_path,
                             dst=str(folder / f"sealed_{ns}_{part}_{seq}.ndjson.zst"))
            jobs.append(job)
        plan.append((path, hashes_path, count, size, job))
    rewrite = functools.partial(rewrite_chunk, level=level)
    if mapper is None or len(jobs) < 2:
        results = iter([rewrite(job, conn=conn) for job in jobs])
    else:
        results = iter(mapper(rewrite, jobs))
    for path, hashes_path, count, size, job in plan:
        if job is not None:
            count, size = next(results)
            path, hashes_path = job.dst, _sidecar(job.dst)
        root.update(read_hashes(Path(hashes_path)))
        if count == 0:
            continue
        sums = checksum_file(Path(path), also=whole)
        sha, nbytes = sums.sha256, sums.size
        chunks.append(SealedChunk(path=path, article_count=count, size=nbytes,
                                  uncompressed_size=size, sha256=sha, offset=offset))
        offset += nbytes
        articles += count
        uncompressed += size
    return SealedSnapshot(
        namespace=ns, chunks=chunks, article_count=articles, redirect_count=redirect_count,
        redirects_dropped=dropped, size=offset, uncompressed_size=uncompressed,
        content_root_hash=root.hexdigest(), sha256=whole.hexdigest(),
    )


def _db_path(conn: sqlite3.Connection) -> str:
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(file)
    return ""


def _sidecar(path: str) -> str:
    return str(Path(path).with_suffix(".sha"))


def _needs_rewrite(conn: sqlite3.Connection, part: int, ns: int, seq: int) -> bool:
    """Does the chunk hold a superseded duplicate or a redirect target?"""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pages WHERE part = ? AND ns = ? AND seq = ? AND dead = 1)"
        " OR EXISTS (SELECT 1 FROM attached WHERE part = ? AND ns = ? AND seq = ?)",
        (part, ns, seq, part, ns, seq)).fetchone()
    return bool(row[0])


def rewrite_chunk(job: RewriteJob, *, level: int,
                  conn: sqlite3.Connection | None = None) -> tuple[int, int]:
    """Rewrite one staged chunk to ``job.dst`` (digests beside it); return (count, size).
    Without ``conn`` (in a worker process) the database is opened read-only."""
    own = conn is None
    if conn is None:
        conn = sqlite3.connect(f"file:{job.db_path}?mode=ro", uri=True)
    try:
        dead = {int(r[0]) for r in conn.execute(
            "SELECT line FROM pages WHERE part = ? AND ns = ? AND seq = ? AND dead = 1",
            (job.part, job.namespace, job.seq))}
        attach: dict[int, list[Link]] = defaultdict(list)
        for line, name, url in conn.execute(
            "SELECT line, name, url FROM attached WHERE part = ? AND ns = ? AND seq = ? "
            "ORDER BY line, name", (job.part, job.namespace, job.seq)
        ):
            attach[int(line)].append(Link(name=name, url=url))
    finally:
        if own:
            conn.close()
    return _rewrite(Path(job.src), Path(job.hashes), Path(job.dst), dead, attach, level)


def _rewrite(
    src: Path, hashes: Path, dst: Path, dead: set[int], attach: dict[int, list[Link]],
    level: int,
) -> tuple[int, int]:
    """Copy a staged chunk without ``dead`` lines, adding redirects; return (count, size).
    The digests of the kept lines go to the ``.sha`` sidecar of ``dst``."""
    count = size = 0
    buf = bytearray()
    cobj = zstandard.ZstdCompressor(level=level, threads=1).compressobj()
    with dst.open("wb") as out, Path(_sidecar(str(dst))).open("wb") as digests:
        # Staged digests are reused for lines kept unchanged.
        for number, (line, digest) in enumerate(zip(_lines(src), read_hashes(hashes),
                                                     strict=True)):
            if number in dead:
                continue
            links = attach.get(number)
            if links:
                article = ARTICLE_DECODER.decode(line)
                known = {link.name for link in article.redirects or ()}
                extra = [link for link in links if link.name not in known]
                article.redirects = [*(article.redirects or ()), *extra]
                line = ENCODER.encode(article)
                digest = line_digest(line)
            digests.write(digest)
            buf += line
            buf.append(0x0A)
            count += 1
            size += len(line) + 1
            if len(buf) >= _READ:
                out.write(cobj.compress(bytes(buf)))
                buf.clear()
        out.write(cobj.compress(bytes(buf)))
        out.write(cobj.flush())
    return count, size


def _lines(path: Path) -> Iterator[bytes]:
    return iter_file_lines(path)
