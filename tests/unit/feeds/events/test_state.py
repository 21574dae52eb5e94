"""State store on SQLite and PostgreSQL: idempotent, ordered by (revision, event time)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from feedserver.feeds.events.state import StateStore
from feedserver.ingest.events import changes_from_json
from feedserver.models import Article, Namespace, Project, Version
from feedserver.storage.db import Database, SQLiteDatabase
from tests.conftest import EVENTS

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"


def _real() -> list[bytes]:
    return [line for line in REAL.read_bytes().splitlines() if line.strip()]


def test_lifecycle_of_one_page(database: Database) -> None:
    """Lines 4-10 of the real events, in stream order: create, delete, a late edit (older
    revision), suppression (delete), undelete, a late undelete (same revision, older event time)
    and a visibility change. The late ones must not win."""
    store = StateStore(database)
    lifecycle = _real()[3:10]
    results = [store.apply(c) for line in lifecycle for c in changes_from_json(line)]
    assert results == [True, True, False, True, True, False, True]
    stored = store.get_stored("testwikidatawiki", 0, 330275)
    assert stored is not None and not stored.deleted and stored.revision == 686140
    assert stored.article.visibility is not None and stored.article.visibility.comment is False
    assert stored.article.version and stored.article.version.comment is None
    # Replaying everything changes nothing.
    assert [store.apply(c) for line in lifecycle for c in changes_from_json(line)] == [False] * 7


def test_delete_hides_from_get_and_name_lookup(database: Database) -> None:
    store = StateStore(database)
    create, delete = _real()[3], _real()[4]
    for c in changes_from_json(create):
        store.apply(c)
    assert [a.identifier for a in store.find_by_name("Q235989")] == [330275]
    for c in changes_from_json(delete):
        store.apply(c)
    assert store.get("testwikidatawiki", 0, 330275) is None
    assert store.get("testwikidatawiki", 0, 330275, include_deleted=True) is not None
    assert store.find_by_name("Q235989") == []


def test_move_in_same_namespace_keeps_page_alive(database: Database) -> None:
    store = StateStore(database)
    move = next(line for line in _real() if b'"page_change_kind":"move"' in line)
    update, moved_from = changes_from_json(move)
    assert store.apply(update) and not store.apply(moved_from)
    article = store.get("commonswiki", 6, 49988679)
    assert article is not None and article.name == "File:Jacobaea vulgaris - Jakobs-Kreuzkraut.jpg"
    assert store.find_by_name("File:Jacobaea_vulgaris_-_Jakobs-Kreuzkraut.jpg", ["commonswiki"])


def test_move_across_namespaces_tombstones_old_key(database: Database) -> None:
    store = StateStore(database)
    move = json.loads(next(line for line in _real() if b'"page_change_kind":"move"' in line))
    move["prior_state"]["page"]["namespace_id"] = 2
    old = Article(name="File:Jakobs-Kreuzkraut.jpg", identifier=49988679,
                  namespace=Namespace(identifier=2), is_part_of=Project(identifier="commonswiki"),
                  version=Version(identifier=1),
                  date_modified=datetime(2020, 1, 1, tzinfo=UTC))
    assert store.load_articles([old]) == 1
    for c in changes_from_json(json.dumps(move)):
        store.apply(c)
    assert store.get("commonswiki", 2, 49988679) is None
    assert store.get("commonswiki", 6, 49988679) is not None


def test_snapshot_seed_never_overwrites_newer_events(database: Database) -> None:
    store = StateStore(database)
    edit = _real()[0]
    for c in changes_from_json(edit):
        store.apply(c)
    stale = Article(name="File:Iris foetidissima fruit (05).jpg", identifier=114491269,
                    namespace=Namespace(identifier=6), is_part_of=Project(identifier="commonswiki"),
                    version=Version(identifier=830021987),
                    date_modified=datetime(2023, 12, 11, tzinfo=UTC))
    fresh = msgspec.structs.replace(stale, identifier=5, name="Other")
    assert store.load_articles([stale, fresh], batch_size=1) == 2
    current = store.get("commonswiki", 6, 114491269)
    assert current and current.version and current.version.identifier == 934984984
    assert store.get("commonswiki", 6, 5) is not None


def test_iter_changed_pages_through_a_time_window(database: Database) -> None:
    store = StateStore(database)
    for line in _real():
        for c in changes_from_json(line):
            store.apply(c)
    since, until = datetime(2024, 10, 4, tzinfo=UTC), datetime(2024, 10, 5, tzinfo=UTC)
    rows = list(store.iter_changed("testwikidatawiki", 0, since, until, page_size=1))
    assert [r.key.identifier for r in rows] == [330275]
    assert list(store.iter_changed("testwikidatawiki", 0, until, until)) == []
    everything = list(store.iter_changed("commonswiki", 6, datetime(2000, 1, 1, tzinfo=UTC),
                                         datetime(2100, 1, 1, tzinfo=UTC), page_size=2))
    assert sorted(r.key.identifier for r in everything) == [49988679, 90146511, 114491269]
    assert [r.changed_us for r in everything] == sorted(r.changed_us for r in everything)


def test_apply_many_is_one_transaction(database: Database) -> None:
    store = StateStore(database)
    changes = [c for line in _real() for c in changes_from_json(line)]
    assert store.apply_many(changes) == store.apply_many([]) + 11
    assert store.apply_many(changes) == 0


def test_load_lines_equals_load_articles(database: Database, tmp_path: Path) -> None:
    """The raw-line seed (what ``snapshot build`` runs) keeps the same rows as decoding each
    record: same keys, order columns and articles; and newer events still win over it."""
    from tests.unit.api.conftest import make_articles

    records = make_articles("enwiki", "en", 0, 25) + make_articles("dewiki", "de", 10, 5)
    lines = [msgspec.json.encode(a) for a in records]
    other = StateStore(SQLiteDatabase(tmp_path / "other.db"))
    store = StateStore(database)
    assert store.load_lines(lines, batch_size=7) == other.load_articles(records) == 30
    rows = "SELECT project, namespace, page_id, name, revision, changed_us, date_modified, " \
           "deleted FROM article_state ORDER BY project, namespace, page_id"
    assert database.fetchall(rows) == other.db.fetchall(rows)
    for a in records:
        assert store.get(a.is_part_of.identifier, a.namespace.identifier, a.identifier) == a
    for c in changes_from_json(_real()[0]):
        store.apply(c)
    stale = Article(name="File:Iris foetidissima fruit (05).jpg", identifier=114491269,
                    namespace=Namespace(identifier=6), is_part_of=Project(identifier="commonswiki"),
                    version=Version(identifier=830021987),
                    date_modified=datetime(2023, 12, 11, tzinfo=UTC))
    store.load_lines([msgspec.json.encode(stale)])
    current = store.get("commonswiki", 6, 114491269)
    assert current and current.version and current.version.identifier == 934984984
