"""The SDK's on-demand call ``get_articles(name, req)``: the article in every project that has
the title, as built from the real dumps (and events), with WME's request semantics."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.wme_sdk import assert_parsed
from tests.integration.wme_sdk.sdk import served
from tests.integration.wme_sdk.server import WMEServer

pytestmark = pytest.mark.integration


def _snapshot_record(server: WMEServer, identifier: str, name: str) -> dict[str, Any]:
    store = SnapshotStore(FilesystemBlobStore(server.data_dir / "blobs"))
    found = [a for a in store.iter_articles(store.manifest(identifier)) if a.name == name]
    assert len(found) == 1, (identifier, name)
    data: dict[str, Any] = msgspec.to_builtins(found[0])
    return data


def _state_record(server: WMEServer, project: str, name: str) -> dict[str, Any]:
    db = SQLiteDatabase(server.data_dir / "feedserver.db")
    try:
        found = StateStore(db).find_by_name(name, [project])
    finally:
        db.close()
    assert len(found) == 1, (project, name)
    data: dict[str, Any] = msgspec.to_builtins(found[0])
    return data


@pytest.mark.parametrize(("name", "identifier"), [
    ("Anarchism", "enwiki_namespace_0"),
    ("Πρότυπο:Disclaimerbox/doc", "elwikivoyage_namespace_10"),  # WME's "*name" route
    ("Άγιο Όρος", "elwikivoyage_namespace_0"),
])
def test_article_as_built_from_the_dump(api: Any, wme_server: WMEServer, token: str,
                                        name: str, identifier: str) -> None:
    got = api.get_articles(name)
    sent = served(wme_server, token, f"articles/{name}")
    assert len(got) == len(sent) == 1
    assert_parsed(got[0], sent[0])
    assert sent[0] == _snapshot_record(wme_server, identifier, name)


def test_title_in_several_projects(api: Any, wme_server: WMEServer, token: str) -> None:
    from modules.api.api_client import Filter, Request

    both = api.get_articles("Article1")
    assert sorted(a.is_part_of.identifier for a in both) == ["dewiki", "simplewiki"]
    for obj, item in zip(both, served(wme_server, token, "articles/Article1"), strict=True):
        assert_parsed(obj, item)
    # in_language.identifier and is_part_of.identifier select the projects searched.
    de = api.get_articles("Article1", Request(filters=[Filter("in_language.identifier", "de")]))
    assert [(a.is_part_of.identifier, a.in_language.identifier) for a in de] == [
        ("dewiki", "de")]
    simple = api.get_articles("Article1", Request(filters={"is_part_of.identifier":
                                                           "simplewiki"}))
    assert [a.is_part_of.identifier for a in simple] == ["simplewiki"]
    assert len(api.get_articles("Article1", Request(limit=1))) == 1


def test_fields(api: Any, wme_server: WMEServer, token: str) -> None:
    from modules.api.api_client import Request

    req = Request(fields=["name", "identifier", "version.identifier", "is_part_of.*"])
    got = api.get_articles("Anarchism", req)
    sent = served(wme_server, token, "articles/Anarchism", req.to_json())
    assert set(sent[0]) == {"name", "identifier", "version", "is_part_of"}
    assert_parsed(got[0], sent[0])
    assert got[0].version.identifier and got[0].article_body is None


def test_article_changed_by_events(api: Any, wme_server: WMEServer, token: str) -> None:
    """A page the real events created, deleted, undeleted and changed the visibility of:
    on-demand serves the state the events left."""
    got = api.get_articles("Q235989")
    sent = served(wme_server, token, "articles/Q235989")
    assert len(got) == 1
    assert_parsed(got[0], sent[0])
    assert sent[0] == _state_record(wme_server, "testwikidatawiki", "Q235989")
    assert got[0].visibility is not None  # a visibility change: all three flags are sent
    assert {k: sent[0]["visibility"][k] for k in ("text", "editor", "comment")}


def test_unknown_title_is_404(api: Any) -> None:
    from modules.api.exceptions import APIStatusError

    with pytest.raises(APIStatusError) as missing:
        api.get_articles("No such page in any project")
    assert missing.value.response.status_code == 404
