"""State store: the latest revision of every page, on SQLite or PostgreSQL.

One row per article key ``(project, namespace, page_id)`` with its name, revision, event time,
deleted flag and the encoded ``Article``. Writes are ordered by ``(revision, changed_us)``: a
change replaces the row only if that pair is strictly greater, so

- replaying a change (same revision, same event time) is a no-op (idempotent apply);
- a late, older revision never overwrites a newer one;
- a delete or undelete of the same revision, seen later, wins over the earlier state.

The comparison happens inside one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` statement, so it
is atomic on both databases and safe with concurrent writers.

A ``moved_from`` delete (the old title of a moved page) only tombstones the row if the row still
carries that old name: when the namespace did not change, the row was already renamed by the
move's ``update`` and must stay alive.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import msgspec

from feedserver.ingest.events import ArticleChange, to_us
from feedserver.models import Article, ArticleKey, article_key
from feedserver.storage.db import Database

TABLE = "article_state"
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Article)

MIGRATION = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " project TEXT NOT NULL, namespace INTEGER NOT NULL, page_id BIGINT NOT NULL,"
    " name TEXT NOT NULL, revision BIGINT NOT NULL, changed_us BIGINT NOT NULL,"
    " date_modified TEXT, deleted INTEGER NOT NULL DEFAULT 0, article {blob} NOT NULL,"
    " PRIMARY KEY (project, namespace, page_id))",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_name ON {TABLE} (name)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_changed ON {TABLE} (project, namespace, changed_us)",
)

# PostgreSQL tells every listener which names changed, whoever wrote them (the events
# consumer, a snapshot load, a diff's advance): each changed row notifies its name before and
# after the change on CHANNEL, delivered when the writer commits; TRUNCATE notifies "" (all).
CHANNEL = "article_state"
NOTIFY_MIGRATION = (
    f"CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "IF TG_OP = 'TRUNCATE' THEN PERFORM pg_notify('" + CHANNEL + "', ''); RETURN NULL; END IF; "
    "IF TG_OP <> 'INSERT' THEN PERFORM pg_notify('" + CHANNEL + "', OLD.name); END IF; "
    "IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN "
    "PERFORM pg_notify('" + CHANNEL + "', NEW.name); END IF; "
    "RETURN NULL; END $$",
    f"CREATE TRIGGER {TABLE}_notify AFTER INSERT OR UPDATE OR DELETE ON {TABLE} "
    f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_notify()",
    f"CREATE TRIGGER {TABLE}_notify_all AFTER TRUNCATE ON {TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_notify()",
)

_COLUMNS = ("project, namespace, page_id, name, revision, changed_us, date_modified, deleted,"
            " article")
_NEWER = (
    f"(excluded.revision > {TABLE}.revision OR "
    f"(excluded.revision = {TABLE}.revision AND excluded.changed_us > {TABLE}.changed_us))"
)
_UPSERT = (
    f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT (project, namespace, page_id) DO UPDATE SET "
    "name = excluded.name, revision = excluded.revision, changed_us = excluded.changed_us, "
    "date_modified = excluded.date_modified, deleted = excluded.deleted, "
    f"article = excluded.article WHERE {_NEWER}"
)
# Tombstone for the old title of a moved page: never inserts, only marks a row still so named.
_MOVED_FROM = (
    f"UPDATE {TABLE} SET deleted = 1, revision = ?, changed_us = ?, article = ? "
    "WHERE project = ? AND namespace = ? AND page_id = ? AND name = ? "
    "AND (revision < ? OR (revision = ? AND changed_us < ?))"
)


_INT64 = (-(2**63), 2**63 - 1)


class _Ref(msgspec.Struct):
    identifier: str


class _NamespaceRef(msgspec.Struct):
    identifier: int


class _VersionRef(msgspec.Struct):
    identifier: int


class _Seed(msgspec.Struct):
    """The fields of an Article line a state row needs (the rest is stored as it is)."""

    name: str
    identifier: int
    namespace: _NamespaceRef
    is_part_of: _Ref
    date_modified: datetime | None = None
    version: _VersionRef | None = None


_SEED = msgspec.json.Decoder(_Seed)


def unstorable(change: ArticleChange) -> str | None:
    """Why the state store cannot hold ``change``, or None when it can (pure). The consumer
    asks before a batch's transaction, so one bad change never sinks the others: integers must
    fit a 64-bit ``BIGINT`` and texts may not hold NUL (PostgreSQL refuses it)."""
    key = change.key
    for what, value in (("page id", key.identifier), ("namespace", key.namespace),
                        ("revision", change.revision), ("event time", change.changed_us)):
        if not _INT64[0] <= value <= _INT64[1]:
            return f"{what} {value} does not fit a 64-bit integer"
    for what, text in (("project", key.project), ("name", change.article.name)):
        if "\x00" in text:
            return f"{what} contains a NUL character"
    return None


class StoredArticle(msgspec.Struct, frozen=True, kw_only=True):
    key: ArticleKey
    name: str
    revision: int
    changed_us: int
    deleted: bool
    article: Article


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


class StateStore:
    """Latest article per key. Synchronous (like ``Database``); call from a thread in async code."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("feeds.state.1", MIGRATION)
        if db.dialect == "postgresql":
            db.migrate("feeds.state.notify.1", NOTIFY_MIGRATION)

    @property
    def local_reads(self) -> bool:
        """Reads are local calls that never wait (``Database.local_reads``)."""
        return self.db.local_reads

    def _row(self, article: Article, revision: int, changed_us: int, deleted: bool) -> tuple[
        Any, ...
    ]:
        key = article_key(article)
        return (key.project, key.namespace, key.identifier, article.name, revision, changed_us,
                _iso(article.date_modified), int(deleted), _ENCODER.encode(article))

    def apply(self, change: ArticleChange) -> bool:
        """Apply one change; True if it changed the stored state."""
        return self.apply_many([change]) == 1

    def apply_many(self, changes: Sequence[ArticleChange]) -> int:
        """Apply changes in order, in ONE transaction (durable together); returns how many
        changed the state."""
        applied = 0
        with self.db.transaction() as cur:
            for change in changes:
                applied += self._apply(cur, change)
        return applied

    def _apply(self, cur: Any, change: ArticleChange) -> int:
        key, rev, ts = change.key, change.revision, change.changed_us
        if change.role == "moved_from":
            count = cur.execute(_MOVED_FROM, (
                rev, ts, _ENCODER.encode(change.article), key.project, key.namespace,
                key.identifier, change.article.name, rev, rev, ts,
            )).rowcount
            return int(count > 0)
        # A visibility change is about a live page's revision: like an update, it means the
        # page exists (so the outcome does not depend on the order events arrive in).
        deleted = change.type == "delete"
        count = cur.execute(_UPSERT, self._row(change.article, rev, ts, deleted)).rowcount
        return int(count > 0)

    def load_articles(self, articles: Iterable[Article], *, batch_size: int = 1000) -> int:
        """Seed from a snapshot (articles without events): ordered by (version, date_modified),
        so a snapshot older than what events already brought changes nothing."""
        total = 0
        batch: list[tuple[Any, ...]] = []
        for article in articles:
            rev = article.version.identifier if article.version else 0
            ts = to_us(article.date_modified) if article.date_modified else 0
            batch.append(self._row(article, rev, ts, False))
            if len(batch) >= batch_size:
                self.db.executemany(_UPSERT, batch)
                total += len(batch)
                batch = []
        if batch:
            self.db.executemany(_UPSERT, batch)
            total += len(batch)
        return total

    def load_lines(self, lines: Iterable[bytes], *, batch_size: int = 1000) -> int:
        """``load_articles`` from a snapshot's NDJSON lines, stored as they are (only the key
        fields are decoded): what ``snapshot build`` and ``load-state`` run."""
        total = 0
        batch: list[tuple[Any, ...]] = []
        for line in lines:
            seed = _SEED.decode(line)
            ts = to_us(seed.date_modified) if seed.date_modified else 0
            batch.append((seed.is_part_of.identifier, seed.namespace.identifier,
                          seed.identifier, seed.name,
                          seed.version.identifier if seed.version else 0, ts,
                          _iso(seed.date_modified), 0, bytes(line)))
            if len(batch) >= batch_size:
                self.db.executemany(_UPSERT, batch)
                total += len(batch)
                batch = []
        if batch:
            self.db.executemany(_UPSERT, batch)
            total += len(batch)
        return total

    def get_stored(self, project: str, namespace: int, page_id: int) -> StoredArticle | None:
        row = self.db.fetchone(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE project = ? AND namespace = ? AND page_id = ?",
            (project, namespace, page_id),
        )
        return None if row is None else _stored(row)

    def get(self, project: str, namespace: int, page_id: int, *,
            include_deleted: bool = False) -> Article | None:
        stored = self.get_stored(project, namespace, page_id)
        if stored is None or (stored.deleted and not include_deleted):
            return None
        return stored.article

    def find_by_name(self, name: str, projects: Sequence[str] | None = None, *,
                     limit: int = 100) -> list[Article]:
        """Live articles named ``name`` (spaces or underscores), across projects."""
        return articles_of(self.db.fetchall(*by_name(name, projects, limit)))

    def iter_changed(self, project: str, namespace: int, since: datetime, until: datetime, *,
                     page_size: int = 1000) -> Iterator[StoredArticle]:
        """Rows whose last change happened in ``[since, until)``, deleted ones included, in
        (changed_us, page_id) order; paged by keyset so memory stays bounded."""
        lo, hi = to_us(since), to_us(until)
        after: tuple[int, int] = (lo - 1, -1)
        while True:
            rows = self.db.fetchall(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE project = ? AND namespace = ? "
                "AND changed_us < ? AND (changed_us > ? OR (changed_us = ? AND page_id > ?)) "
                "ORDER BY changed_us, page_id LIMIT ?",
                (project, namespace, hi, after[0], after[0], after[1], page_size),
            )
            for row in rows:
                yield _stored(row)
            if len(rows) < page_size:
                return
            after = (int(rows[-1][5]), int(rows[-1][2]))


def name_key(name: str) -> str:
    """A title as the state store holds it (spaces, not underscores)."""
    return name.replace("_", " ")


def by_name(name: str, projects: Sequence[str] | None, limit: int) -> tuple[str, list[Any]]:
    """The query of ``find_by_name`` and its parameters (pure)."""
    # Only the article column: on-demand's hot read (each other column is a Python object).
    sql = f"SELECT article FROM {TABLE} WHERE name = ? AND deleted = 0"
    params: list[Any] = [name_key(name)]
    if projects:
        sql += f" AND project IN ({', '.join('?' for _ in projects)})"
        params.extend(projects)
    sql += " ORDER BY project, namespace, page_id LIMIT ?"
    params.append(limit)
    return sql, params


def articles_of(rows: Iterable[Sequence[Any]]) -> list[Article]:
    """The articles of ``by_name``'s rows."""
    return [_DECODER.decode(bytes(row[0])) for row in rows]


def _stored(row: Sequence[Any]) -> StoredArticle:
    return StoredArticle(
        key=ArticleKey(row[0], int(row[1]), int(row[2])),
        name=row[3],
        revision=int(row[4]),
        changed_us=int(row[5]),
        deleted=bool(row[7]),
        article=_DECODER.decode(bytes(row[8])),
    )
