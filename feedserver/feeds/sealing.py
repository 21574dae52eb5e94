"""Seal staged chunks into final per-namespace chunk files.

Sealing (1) keeps one record per page id and namespace, the one with the highest
``version.identifier`` (the later one on a tie); (2) attaches each redirect to its target's
``redirects[]``, dropping redirects whose target is absent; (3) computes per-chunk and
whole-download SHA-256 and the content root hash. Only chunks holding a dropped duplicate or
a redirect target are decompressed and rewritten; the others are used as staged, with their
per-article hashes read from the staging sidecar.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import msgspec
import zstandard

from feedserver.feeds.chunks import ARTICLE_DECODER, iter_file_lines, read_hashes
from feedserver.feeds.hashing import ENCODER, RootHasher
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


def seal_namespace(
    conn: sqlite3.Connection, ns: int, folder: Path, *, level: int, dropped: int
) -> SealedSnapshot:
    chunks: list[SealedChunk] = []
    root = RootHasher(spill_dir=folder)
    whole = hashlib.sha256()
    offset = articles = uncompressed = 0
    rows = conn.execute(
        "SELECT part, seq, path, hashes_path, article_count, uncompressed_size FROM chunks "
        "WHERE ns = ? ORDER BY part, seq", (ns,)
    ).fetchall()
    redirect_count = 0
    for part, seq, path, hashes_path, count, size in rows:
        dead = {int(r[0]) for r in conn.execute(
            "SELECT line FROM pages WHERE part = ? AND ns = ? AND seq = ? AND dead = 1",
            (part, ns, seq))}
        attach: dict[int, list[Link]] = defaultdict(list)
        for line, name, url in conn.execute(
            "SELECT line, name, url FROM attached WHERE part = ? AND ns = ? AND seq = ? "
            "ORDER BY line, name", (part, ns, seq)
        ):
            attach[int(line)].append(Link(name=name, url=url))
            redirect_count += 1
        if dead or attach:
            out = folder / f"sealed_{ns}_{len(chunks)}.ndjson.zst"
            count, size = _rewrite(Path(path), Path(hashes_path), out, dead, attach, root, level)
            path = str(out)
        else:
            root.update(read_hashes(Path(hashes_path)))
        if count == 0:
            continue
        sha, nbytes = _hash_file(Path(path), whole)
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


def _rewrite(
    src: Path, hashes: Path, dst: Path, dead: set[int], attach: dict[int, list[Link]],
    root: RootHasher, level: int,
) -> tuple[int, int]:
    """Copy a staged chunk without ``dead`` lines, adding redirects; return (count, size)."""
    count = size = 0
    buf = bytearray()
    cobj = zstandard.ZstdCompressor(level=level, threads=1).compressobj()
    with dst.open("wb") as out:
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
                digest = hashlib.sha256(line).digest()
            root.add_digest(digest)
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


def _hash_file(path: Path, whole: hashlib._Hash) -> tuple[str, int]:
    digest = hashlib.sha256()
    nbytes = 0
    with path.open("rb") as fh:
        while block := fh.read(_READ):
            digest.update(block)
            whole.update(block)
            nbytes += len(block)
    return digest.hexdigest(), nbytes
