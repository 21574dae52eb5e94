"""page_change events -> ArticleChange: every real event and the schema example."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from feedserver.errors import InvalidEvent
from feedserver.ingest.events import changes_from_json, decode_page_change, map_page_change
from tests.conftest import EVENTS

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
EXAMPLE = EVENTS / "schema_examples" / "mediawiki.page_change.v1__schema-1.3.0-examples.jsonl"


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def test_every_real_event_maps() -> None:
    lines = _lines(REAL)
    assert len(lines) == 13
    kinds = []
    for line in lines:
        changes = changes_from_json(line)
        source = json.loads(line)
        kinds.append(source["page_change_kind"])
        primary = changes[0]
        assert primary.key.project == source["wiki_id"]
        assert primary.key.identifier == source["page"]["page_id"]
        assert primary.article.version is not None
        assert primary.article.version.identifier == source["revision"]["rev_id"]
        assert primary.article.name == source["page"]["page_title"].replace("_", " ")
        expected = {"delete": "delete", "visibility_change": "visibility-change"}.get(
            source["page_change_kind"], "update")
        assert primary.type == expected
        # The encoded article decodes back as a WME Article.
        wire = msgspec.json.decode(msgspec.json.encode(primary.article))
        assert wire["event"]["type"] == expected
    assert set(kinds) == {"create", "edit", "move", "delete", "undelete", "visibility_change"}


def test_move_gives_update_then_delete_of_old_title() -> None:
    move = next(line for line in _lines(REAL) if b'"page_change_kind":"move"' in line)
    update, delete = changes_from_json(move)
    assert (update.type, update.role) == ("update", "primary")
    assert (delete.type, delete.role) == ("delete", "moved_from")
    assert update.article.name == "File:Jacobaea vulgaris - Jakobs-Kreuzkraut.jpg"
    assert delete.article.name == "File:Jakobs-Kreuzkraut.jpg"
    assert delete.article.url == "https://commons.wikimedia.org/wiki/File:Jakobs-Kreuzkraut.jpg"
    assert update.article.event and delete.article.event
    assert update.article.event.identifier != delete.article.event.identifier


def test_identifiers_are_deterministic_and_unique() -> None:
    first = [c.article.event.identifier for line in _lines(REAL)
             for c in changes_from_json(line) if c.article.event]
    again = [c.article.event.identifier for line in _lines(REAL)
             for c in changes_from_json(line) if c.article.event]
    assert first == again
    assert len(set(first)) == len(first) == 14


def test_suppressed_delete_leaks_nothing() -> None:
    suppressed = [
        line for line in _lines(REAL)
        if b'"page_change_kind":"delete"' in line and b'"is_content_visible":false' in line
    ]
    assert len(suppressed) == 1
    (change,) = changes_from_json(suppressed[0])
    article = change.article
    assert article.version is not None
    assert article.version.comment is None and article.version.editor is None
    assert article.version.sha1 is None and article.version.size is None
    assert article.article_body is None
    assert article.visibility is not None
    assert not (article.visibility.text or article.visibility.editor or article.visibility.comment)


def test_visibility_change_hides_comment() -> None:
    line = next(line for line in _lines(REAL) if b'"visibility_change"' in line)
    (change,) = changes_from_json(line)
    assert change.type == "visibility-change"
    assert change.article.visibility is not None
    assert change.article.visibility.comment is False
    assert change.article.visibility.text and change.article.visibility.editor
    assert change.article.version is not None and change.article.version.comment is None
    assert change.article.version.editor is not None


def test_schema_example_and_content_body() -> None:
    (line,) = _lines(EXAMPLE)
    (change,) = changes_from_json(line)
    assert change.key.project == "example" and change.needs_body
    assert change.article.url is None  # placeholder domain is not a host
    event = json.loads(line)
    event["revision"]["content_slots"]["main"]["content_body"] = (
        "'''Example''' is a page.\n{{Infobox thing|a=1}}\n[[Category:Examples]]\n== More ==\nx")
    (with_body,) = changes_from_json(json.dumps(event))
    article = with_body.article
    assert not with_body.needs_body
    assert article.article_body and article.article_body.wikitext
    assert [c.name for c in article.categories or []] == ["Category:Examples"]
    assert [t.name for t in article.templates or []] == ["Template:Infobox thing"]
    assert article.abstract == "Example is a page."
    # Hidden text: the body is dropped even when the event carries it.
    event["revision"]["is_content_visible"] = False
    (hidden,) = changes_from_json(json.dumps(event))
    assert hidden.article.article_body is None and hidden.article.abstract is None
    assert hidden.article.categories is None and not hidden.needs_body


def test_missing_meta_id_still_deterministic() -> None:
    (line,) = _lines(EXAMPLE)
    a = changes_from_json(line)[0].article.event
    b = changes_from_json(line)[0].article.event
    assert a and b and a.identifier == b.identifier


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.update(page_change_kind="purge"), "schema violation"),
        (lambda e: e.pop("page"), "schema violation"),
        (lambda e: e["revision"].pop("rev_id"), "schema violation"),
        (lambda e: e["page"].update(page_id="x"), "schema violation"),
        (lambda e: e.update({"$schema": "/mediawiki/revision/create/2.0.0"}), "unsupported"),
        (lambda e: e["page"].update(page_id=0), r"page_id"),
        (lambda e: e.update(prior_state=None, page_change_kind="move"), "prior_state"),
    ],
)
def test_invalid_events(mutate: object, reason: str) -> None:
    event = json.loads(_lines(REAL)[0])
    mutate(event)  # type: ignore[operator]
    with pytest.raises(InvalidEvent, match=reason):
        changes_from_json(json.dumps(event))


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"[]", b"null"])
def test_bad_json(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        map_page_change(decode_page_change(raw))
