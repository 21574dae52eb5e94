"""recentchange events -> title changes -> article changes (pure), including hostile input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.errors import InvalidEvent
from feedserver.ingest.envelope import decode_envelope, input_kind
from feedserver.ingest.recentchange import (
    TitleChange,
    article_changes,
    decode_recentchange,
    map_recentchange,
    title_changes_from_json,
)
from feedserver.ingest.revision import WikiRevision
from tests.conftest import EVENTS
from tests.fixtures.recentchange import from_page_change, log_event, real_page_changes

EXAMPLE = EVENTS / "schema_examples" / "mediawiki.recentchange__schema-1.0.1-examples.jsonl"
INT64 = 2**63 - 1


def rc_of_real() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(pc, from_page_change(pc, rcid=i + 1))
            for i, pc in enumerate(real_page_changes(EVENTS))]


def page_for(change: TitleChange, page_id: int = 7, revision: int = 11) -> WikiRevision:
    return WikiRevision(project=change.project, page_id=page_id,
                        namespace=change.namespace if change.namespace is not None else 0,
                        title=change.title, revision=change.revision or revision,
                        text="Hello [[Category:Greetings]]", user="Ann", user_id=3,
                        comment="why", size=30, sha1="abc", content_model="wikitext",
                        timestamp=datetime(2024, 10, 4, tzinfo=UTC))


def test_the_schema_example_decodes_and_maps_to_nothing() -> None:
    # The schema's own example has no type, wiki or title: valid, but not an article change.
    (line,) = [x for x in EXAMPLE.read_bytes().splitlines() if x.strip()]
    assert decode_recentchange(line).meta.stream == "mediawiki.recentchange"
    assert title_changes_from_json(line) == []
    assert input_kind(line) == "recentchange"


def test_every_real_change_maps_like_its_page_change() -> None:
    expected = {"create": ("update", "revision"), "edit": ("update", "revision"),
                "delete": ("delete", "stored"), "undelete": ("update", "latest"),
                "move": ("update", "latest"),
                "visibility_change": ("visibility-change", "revision")}
    for page_change, rc in rc_of_real():
        kind = page_change["page_change_kind"]
        (change,) = title_changes_from_json(json.dumps(rc))
        assert (change.kind, change.lookup) == expected[kind]
        assert change.source_kind == kind
        assert change.event_id.startswith(page_change["meta"]["id"])  # dedup key: meta.id
        assert change.project == page_change["wiki_id"]
        if change.lookup == "revision":
            assert change.revision == page_change["revision"]["rev_id"]
        if kind == "move":
            assert change.title == page_change["page"]["page_title"].replace("_", " ")
            assert change.moved_from == "File:Jakobs-Kreuzkraut.jpg"


def test_edit_resolves_to_the_same_article_model() -> None:
    _, rc = rc_of_real()[0]
    (change,) = title_changes_from_json(json.dumps(rc))
    (out,) = article_changes(change, page_for(change, page_id=114491269))
    assert (out.key.project, out.key.namespace, out.key.identifier) == (
        "commonswiki", 6, 114491269)
    assert out.revision == 934984984 and out.type == "update" and not out.needs_body
    article = out.article
    assert article.article_body and article.article_body.wikitext.startswith("Hello")
    assert article.categories and article.categories[0].name == "Category:Greetings"
    assert article.url == ("https://commons.wikimedia.org/wiki/"
                           "File:Iris_foetidissima_fruit_(05).jpg")
    assert article.version and article.version.editor and article.version.editor.name == "Ann"
    assert article.previous_version and article.previous_version.identifier == 830021987
    assert article.visibility is None
    # Replaying the same event yields the same event identifier.
    (again,) = article_changes(change, page_for(change, page_id=114491269))
    assert article.event and again.article.event
    assert article.event.identifier == again.article.event.identifier


def test_move_is_update_of_new_title_then_delete_of_old() -> None:
    _, rc = next((pc, rc) for pc, rc in rc_of_real() if pc["page_change_kind"] == "move")
    (change,) = title_changes_from_json(json.dumps(rc))
    page = msgspec.structs.replace(page_for(change), namespace=6)
    update, delete = article_changes(change, page)
    assert (update.type, update.role, update.article.name) == (
        "update", "primary", "File:Jacobaea vulgaris - Jakobs-Kreuzkraut.jpg")
    assert (delete.type, delete.role, delete.article.name) == (
        "delete", "moved_from", "File:Jakobs-Kreuzkraut.jpg")
    assert update.key.identifier == delete.key.identifier  # a move keeps the page id


def test_revision_deletion_hides_fields_from_nfield_bits() -> None:
    event = log_event(title="Pear", namespace=0, log_type="suppress", log_action="revision",
                      params={"type": "revision", "ids": ["101", 102, 102], "ofield": 0,
                              "nfield": 1 | 4 | 8})
    first, second = title_changes_from_json(json.dumps(event))  # duplicate id 102 once
    assert (first.revision, second.revision) == (101, 102)
    assert first.event_id != second.event_id
    assert first.visibility is not None
    assert (first.visibility.text, first.visibility.editor, first.visibility.comment) == (
        False, False, True)
    (out,) = article_changes(first, page_for(first))
    assert out.type == "visibility-change" and out.article.article_body is None
    version = out.article.version
    assert version and version.editor is None and version.comment == "why"
    assert version.sha1 is None


@pytest.mark.parametrize(("log_type", "log_action", "kind", "lookup"), [
    ("delete", "delete", "delete", "stored"),
    ("delete", "delete_redir", "delete", "stored"),
    ("suppress", "delete", "delete", "stored"),
    ("delete", "restore", "update", "latest"),
    ("upload", "overwrite", "update", "latest"),
    ("import", "interwiki", "update", "latest"),
])
def test_log_actions(log_type: str, log_action: str, kind: str, lookup: str) -> None:
    event = log_event(title="Pear", namespace=0, log_type=log_type, log_action=log_action)
    (change,) = title_changes_from_json(json.dumps(event))
    assert (change.kind, change.lookup, change.title) == (kind, lookup, "Pear")


@pytest.mark.parametrize("event", [
    {"type": "categorize"},
    {"type": "external"},
    {"type": 6},  # categorize by number
    {"type": "log", "log_type": "block", "log_action": "block"},
    {"type": "log", "log_type": "delete", "log_action": "event"},
    {"type": "log", "log_type": "delete", "log_action": "revision",
     "log_params": {"type": "oldimage", "ids": ["20200101"], "nfield": 1}},
    {"type": "log", "log_type": "newusers", "log_action": "create", "title": None},
])
def test_what_the_feeds_ignore(event: dict[str, Any]) -> None:
    base = log_event(title="Pear", namespace=0, log_type="x", log_action="y")
    base.update(event)
    assert title_changes_from_json(json.dumps(base)) == []


@pytest.mark.parametrize(("patch", "reason"), [
    ({"$schema": "/mediawiki/page/delete/1.0.0"}, "unsupported"),
    ({"revision": {"new": 0}}, "schema"),
    ({"revision": {"new": 2**63}}, "schema"),
    ({"namespace": 2**40}, "schema"),
    ({"wiki": "EN WIKI"}, "schema"),
    ({"title": ""}, "schema"),
    ({"revision": None}, "schema"),
    ({"meta": {"stream": "x"}}, "schema"),
    ({"meta": {"dt": "10000-01-01T00:00:00Z", "stream": "x"}}, "schema"),
])
def test_invalid_events_are_typed(patch: dict[str, Any], reason: str) -> None:
    base = log_event(title="Pear", namespace=0, log_type="x", log_action="y")
    base.update(type="edit", revision={"new": 5})
    base.update(patch)
    with pytest.raises(InvalidEvent) as info:
        title_changes_from_json(json.dumps(base))
    assert info.value.extra["reason"] == reason


def test_malformed_json_and_move_without_target() -> None:
    with pytest.raises(InvalidEvent) as info:
        title_changes_from_json(b'{"$schema": ')
    assert info.value.extra["reason"] == "json"
    move = log_event(title="Pear", namespace=0, log_type="move", log_action="move")
    with pytest.raises(InvalidEvent, match="target"):
        title_changes_from_json(json.dumps(move))


def test_envelope_tells_the_kinds_apart() -> None:
    page_change = real_page_changes(EVENTS)[0]
    assert decode_envelope(json.dumps(page_change)).project == "commonswiki"
    assert input_kind(json.dumps(page_change)) == "page_change"
    assert input_kind(b"[1]") is None and input_kind(b'{"$schema": "/x/1.0.0", "meta": {}}') is None


# --- hostile input -----------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=8)
_FIELDS = ["type", "id", "wiki", "namespace", "title", "timestamp", "revision", "length",
           "log_type", "log_action", "log_params", "meta", "server_url", "bot", "minor",
           "$schema"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(base=st.sampled_from([rc for _, rc in rc_of_real()]),
       patch=st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=4))
def test_hostile_events_map_or_fail_typed(base: dict[str, Any], patch: dict[str, Any]) -> None:
    # Whatever the fields hold, the mapping returns changes or raises InvalidEvent, never
    # anything else; and every number it lets through fits SQLite's int64.
    event = {**base, **patch}
    try:
        changes = title_changes_from_json(json.dumps(event))
    except InvalidEvent:
        return
    for change in changes:
        for value in (change.revision, change.parent, change.namespace, change.changed_us):
            assert value is None or -INT64 <= value <= INT64
        for out in article_changes(change, page_for(change)):
            assert -INT64 <= out.changed_us <= INT64


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        title_changes_from_json(raw)
    assert input_kind(raw) in (None, "page_change", "recentchange")


def test_decoded_times_are_the_event_times() -> None:
    _, rc = rc_of_real()[0]
    event = map_recentchange(decode_recentchange(json.dumps(rc)))[0]
    assert event.dt == datetime(2024, 10, 7, 19, 33, 46, tzinfo=UTC)
