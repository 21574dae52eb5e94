"""recentchange title changes resolved against a real loopback Action API (answering from a real
dump) and a real state store: page ids, texts, deletes, moves, visibility, in-batch order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from feedserver.feeds.events.state import StateStore
from feedserver.ingest.recentchange import TitleChange, title_changes_from_json
from feedserver.models import Article
from feedserver.sources.mediawiki import ActionApiClient
from feedserver.sources.resolve import resolve
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS
from tests.fixtures.action_api import ActionApi, load_articles, serve_action_api
from tests.fixtures.recentchange import edit_of, log_event

UA = "feedserver-tests/1 (ops@example.org)"


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    return load_articles(DUMPS, [
        "gensim-4.4.0/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"])


@pytest.fixture
def api(articles: list[Article]) -> Iterator[ActionApi]:
    with serve_action_api(articles) as server:
        yield server


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    db = SQLiteDatabase(tmp_path / "state.db")
    try:
        yield StateStore(db)
    finally:
        db.close()


async def run(api: ActionApi, state: StateStore, events: list[dict[str, Any]]
              ) -> tuple[list[TitleChange], Any]:
    changes = [c for e in events for c in title_changes_from_json(json.dumps(e))]
    client = ActionApiClient(api.url, user_agent=UA)
    try:
        return changes, await resolve(changes, client, state)
    finally:
        await client.close()


async def test_edits_resolve_to_page_ids_and_texts_in_few_requests(
        api: ActionApi, state: StateStore, articles: list[Article]) -> None:
    events = [edit_of(a, rcid=i) for i, a in enumerate(articles[:60])]
    _, resolved = await run(api, state, events)
    assert resolved.unresolved == 0 and len(api.requests) == 2  # 60 revisions, 2 requests
    for article, (change,) in zip(articles[:60], resolved.changes, strict=True):
        assert change.key.identifier == article.identifier
        assert change.article.name == article.name and not change.needs_body
        body = change.article.article_body
        assert body is not None and article.article_body is not None
        assert body.wikitext == article.article_body.wikitext


async def test_delete_move_restore_and_visibility(
        api: ActionApi, state: StateStore, articles: list[Article]) -> None:
    first, second, third, fourth = articles[:4]
    assert first.version and third.version
    _, seeded = await run(api, state, [edit_of(a, rcid=i) for i, a in enumerate(articles[:4])])
    state.apply_many([c for group in seeded.changes for c in group])

    # The wiki moved `second` to a new title (same page, same namespace).
    moved = msgspec.structs.replace(second, name=f"{second.name} (moved)")
    api.by_title[moved.name] = moved
    api.hidden[third.version.identifier] = (True, False, False)
    events = [
        log_event(title=first.name, namespace=0, log_type="delete", log_action="delete", rcid=10),
        log_event(title=second.name, namespace=0, log_type="move", log_action="move", rcid=11,
                  params={"target": moved.name, "noredir": "0"}),
        log_event(title=third.name, namespace=0, log_type="delete", log_action="revision",
                  rcid=12, params={"type": "revision", "ids": [str(third.version.identifier)],
                                   "ofield": 0, "nfield": 1}),
        log_event(title="Never seen", namespace=0, log_type="delete", log_action="delete",
                  rcid=13),
        log_event(title=fourth.name, namespace=0, log_type="delete", log_action="restore",
                  rcid=14),
    ]
    _, resolved = await run(api, state, events)
    (delete,), (update, old), (hidden,), unknown, (restored,) = resolved.changes
    assert (delete.type, delete.key.identifier) == ("delete", first.identifier)
    assert delete.revision == first.version.identifier  # the stored revision, a later time
    assert (update.type, update.article.name, old.role) == ("update", moved.name, "moved_from")
    assert update.key == old.key
    assert hidden.type == "visibility-change" and hidden.article.article_body is None
    assert hidden.article.visibility is not None and not hidden.article.visibility.text
    assert unknown == [] and resolved.unresolved == 1
    assert restored.type == "update" and restored.key.identifier == fourth.identifier

    state.apply_many([c for group in resolved.changes for c in group])
    assert state.get("enwiki", 0, first.identifier) is None  # deleted
    renamed = state.get("enwiki", 0, second.identifier)
    assert renamed is not None and renamed.name == moved.name  # moved, still live
    shown = state.get("enwiki", 0, third.identifier)
    assert shown is not None and shown.article_body is None


async def test_a_page_created_and_deleted_in_one_batch(
        api: ActionApi, state: StateStore, articles: list[Article]) -> None:
    # The delete must find the page the same batch created, before the state store has it.
    article = articles[5]
    events = [edit_of(article, rcid=1),
              log_event(title=article.name, namespace=0, log_type="delete",
                        log_action="delete", rcid=2)]
    _, resolved = await run(api, state, events)
    (update,), (delete,) = resolved.changes
    assert update.key == delete.key and delete.type == "delete"
