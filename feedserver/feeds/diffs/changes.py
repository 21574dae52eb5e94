"""The state-store changes of a ``diff advance`` window, spilled to a scratch SQLite table
(``changes``: one row per page, its stored article as JSON), and applied to the lines of a
version (``merged``): to article records, and to Structured Contents records
(``diffs.structured``) with their own ``page`` / ``replace`` / ``add``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime

from feedserver.feeds.diffs.apply import probe
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.chunks import ARTICLE_DECODER
from feedserver.formats.hashing import ENCODER

_BATCH = 1000

CHANGES_SCHEMA = """
CREATE TABLE changes (id INTEGER PRIMARY KEY, deleted INTEGER NOT NULL, rev INTEGER NOT NULL,
    visibility INTEGER NOT NULL, article BLOB NOT NULL, used INTEGER NOT NULL DEFAULT 0)
"""


def spill_changes(conn: sqlite3.Connection, state: StateStore, project: str, namespace: int,
                  since: datetime, until: datetime) -> set[int]:
    """Copy the state store's rows changed in ``[since, until)`` to the ``changes`` table;
    returns their page ids."""
    ids: set[int] = set()
    rows: list[tuple[int, int, int, int, bytes]] = []
    conn.execute("BEGIN")
    for stored in state.iter_changed(project, namespace, since, until):
        ids.add(stored.key.identifier)
        rows.append((stored.key.identifier, int(stored.deleted), stored.revision,
                     int(stored.article.visibility is not None),
                     ENCODER.encode(stored.article)))
        if len(rows) >= _BATCH:
            conn.executemany("INSERT OR REPLACE INTO changes (id, deleted, rev, visibility, "
                             "article) VALUES (?,?,?,?,?)", rows)
            rows.clear()
    conn.executemany("INSERT OR REPLACE INTO changes (id, deleted, rev, visibility, article) "
                     "VALUES (?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    return ids


# (page id, revision or 0) of a line; what replaces a changed page's line (from the stored
# article and the old line); what an added page's line is (from the stored article).
PageOf = Callable[[bytes], tuple[int, int]]
Replace = Callable[[bytes, bytes], bytes]
Add = Callable[[bytes], bytes]


def _article_page(line: bytes) -> tuple[int, int]:
    page = probe(line)
    return page.identifier, page.revision or 0


def _article_replace(blob: bytes, line: bytes) -> bytes:
    new = ARTICLE_DECODER.decode(blob)
    if not new.redirects:
        new.redirects = ARTICLE_DECODER.decode(line).redirects
    return ENCODER.encode(new)


def merged(conn: sqlite3.Connection, lines: Iterator[bytes], changed: set[int], *,
           page: PageOf = _article_page, replace: Replace = _article_replace,
           add: Add = bytes) -> Iterator[bytes]:
    """Version N's lines with the spilled changes applied, then the added pages' lines.
    Unchanged lines are copied byte for byte: re-encoding a decoded record is not always
    byte-identical (an integral float written as ``1`` comes back as ``1.0``). ``page``,
    ``replace`` and ``add`` read and make the lines (articles by default)."""
    conn.execute("UPDATE changes SET used = 0")
    for line in lines:
        identifier, base_rev = page(line)
        if identifier not in changed:
            yield line
            continue
        row = conn.execute("SELECT deleted, rev, visibility, article FROM changes WHERE id = ?",
                           (identifier,)).fetchone()
        deleted, rev, visibility, blob = row
        conn.execute("UPDATE changes SET used = 1 WHERE id = ?", (identifier,))
        if rev < base_rev or (rev == base_rev and not deleted and not visibility):
            yield line  # the state store lags this version
        elif not deleted:
            yield replace(bytes(blob), line)
    for (blob,) in conn.execute("SELECT article FROM changes WHERE used = 0 AND deleted = 0 "
                                "ORDER BY id"):
        yield add(bytes(blob))
