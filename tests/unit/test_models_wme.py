"""Our records through the official WME SDK's models, pinned against WME's real responses.

* Every record we make (from the shared dumps, history and revision-deleted ones included, and
  from the shared real page_change events) is read by the SDK's ``Article.from_json`` with
  nothing dropped or misread (``assert_parsed``): ``visibility: {}`` or a date it cannot parse
  fail here.
* What WME sends in every one of its sample responses (``modules/api/testdata``) we send too,
  except what the docs list as not (yet) ours, each with its reason: snapshot, chunk, batch,
  project, language, namespace and code metadata as well as articles.
* We read WME's own records with our models (a WME snapshot line is a valid record for us).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from feedserver.api.batches import batch_view
from feedserver.api.metadata import CODES, NAMESPACES, language_view
from feedserver.api.snapshots import chunk_view, snapshot_view
from feedserver.feeds.batches.store import BatchManifest
from feedserver.feeds.snapshots.manifest import ChunkInfo, Manifest, SourceInfo
from feedserver.ingest.dump import read_dump
from feedserver.ingest.events import changes_from_json
from feedserver.models import Article, Language, Namespace, Project, Size
from tests.conftest import DUMPS, EVENTS
from tests.fixtures.wme_sdk import TESTDATA, assert_parsed, sdk_on_path

DUMP_FILES = [
    DUMPS / "gensim-4.4.0" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.xml",
    DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.Commonswiki.Sample.xml",
    DUMPS / "pywikibot" / "pair-0.10.xml",
    DUMPS / "pywikibot" / "article-pear.xml",
]
PAGE_CHANGE = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"

# Sent in every WME sample article, but not by us: why (docs/wme-compatibility.md).
NOT_OURS = {
    ".article_body.html": "no Parsoid HTML: we serve wikitext",
    ".main_entity": "no Wikidata item links yet",
    ".additional_entities": "no Wikidata usage aspects yet",
}
# Sent in every sample because every sample page has them; ours when the page has them.
DATA_DEPENDENT = {".abstract", ".categories", ".templates"}
# Snapshot records are built from dumps: no event happened (WME builds them from its event
# topic, so its lines carry the last event).
EVENT_ONLY = {".event"}


@pytest.fixture(scope="module")
def sdk() -> Iterator[Any]:
    with sdk_on_path():
        from modules.api import article

        yield article


def _dump_records() -> list[Article]:
    out: list[Article] = []
    for path in DUMP_FILES:
        _, records = read_dump(path)
        out.extend(r for r in records if isinstance(r, Article))
    return out


def _event_records() -> list[Article]:
    out: list[Article] = []
    for line in PAGE_CHANGE.read_bytes().splitlines():
        out.extend(change.article for change in changes_from_json(line))
    return out


def _paths(obj: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.add(prefix + "." + key)
            out |= _paths(value, prefix + "." + key)
    elif isinstance(obj, list) and obj:
        for item in obj:
            out |= _paths(item, prefix)
    return out


def _always(samples: list[dict[str, Any]]) -> set[str]:
    """Paths present in every sample: what WME always sends for that kind of object."""
    common = _paths(samples[0])
    for sample in samples[1:]:
        common &= _paths(sample)
    return common


def _wme_articles() -> list[dict[str, Any]]:
    lines = (TESTDATA / "articles.ndjson").read_text().splitlines()
    articles: list[dict[str, Any]] = json.loads((TESTDATA / "articles.json").read_text())
    return articles + [json.loads(line) for line in lines if line.strip()]


def test_the_sdk_reads_every_record_as_sent(sdk: Any) -> None:
    records = _dump_records() + _event_records()
    assert any(r.visibility for r in records), "a revision-deleted record is part of the set"
    for record in records:
        sent = json.loads(msgspec.json.encode(record))
        assert_parsed(sdk.Article.from_json(sent), sent, f"$<{record.name}>")


def test_objects_wme_always_completes() -> None:
    for record in _dump_records() + _event_records():
        sent = json.loads(msgspec.json.encode(record))
        if "visibility" in sent:
            assert set(sent["visibility"]) == {"text", "editor", "comment"}
        size = sent.get("version", {}).get("size")
        if size is not None:
            assert set(size) == {"value", "unit_text"}


def test_article_fields_wme_always_sends() -> None:
    def under(path: str, roots: set[str] | dict[str, str]) -> bool:
        return any(path == r or path.startswith(r + ".") for r in roots)

    required = {p for p in _always(_wme_articles())
                if not under(p, NOT_OURS) and not under(p, DATA_DEPENDENT)}
    assert {".name", ".version.identifier", ".license.identifier"} <= required
    for kind, records in (("dump", _dump_records()), ("event", _event_records())):
        expected = {p for p in required if kind == "event" or not under(p, EVENT_ONLY)}
        for record in records:
            sent = json.loads(msgspec.json.encode(record))
            if record.event is not None and record.event.type == "delete":
                continue  # a delete carries no body (WME neither)
            if record.visibility is not None and not record.visibility.text:
                continue  # hidden text: no body (WME neither)
            have = _paths(sent)
            if kind == "event" and record.article_body is None:
                # Real page_change events carry no text: the consumer fetches it (see
                # tests/unit/feeds/test_event_records_complete.py); here there is no fetch.
                have |= {".article_body", ".article_body.wikitext"}
            missing = expected - have
            assert not missing, (kind, record.name, sorted(missing))


def test_we_read_wme_records() -> None:
    for sample in _wme_articles():
        article = msgspec.convert(sample, Article)
        assert article.name == sample["name"] and article.version is not None


def _manifest() -> Manifest:
    chunk = ChunkInfo(identifier="simplewiki_namespace_0_chunk_0", index=0, key="k",
                      article_count=3, size=2_345_678, uncompressed_size=9_999_999,
                      sha256="0" * 64, offset=0)
    return Manifest(
        identifier="simplewiki_namespace_0", version=3,
        date_modified=datetime(2024, 8, 29, 0, 3, 26, 941150, tzinfo=UTC),
        is_part_of=Project(identifier="simplewiki", url="https://simple.wikipedia.org"),
        in_language=Language(identifier="simple"), namespace=Namespace(identifier=0),
        article_count=3, size=Size(value=2_345_678, unit_text="B"),
        uncompressed_size=9_999_999, chunks=[chunk], content_root_hash="1" * 64,
        sha256="2" * 64, source=SourceInfo(dumps=[], schema_versions=[]))


def _keys_cover(ours: dict[str, Any], theirs: dict[str, Any], what: str) -> None:
    missing = _paths(theirs) - _paths(ours)
    assert not missing, (what, sorted(missing))
    for path in ("version", "identifier"):
        if path in theirs:
            assert type(ours[path]) is type(theirs[path]), (what, path)


def test_metadata_has_every_field_wme_sends(tmp_path: Path) -> None:
    m = _manifest()
    snapshot = msgspec.to_builtins(snapshot_view(m))
    _keys_cover(snapshot, json.loads((TESTDATA / "snapshot.json").read_text()), "snapshot")
    chunk = msgspec.to_builtins(chunk_view(m, m.chunks[0]))
    _keys_cover(chunk, json.loads((TESTDATA / "chunk.json").read_text()), "chunk")
    assert "chunks" not in chunk and snapshot["size"] == {"value": 2.346, "unit_text": "MB"}
    batch = msgspec.to_builtins(batch_view(BatchManifest(
        identifier=m.identifier, date="2024-08-29", hour="00", date_modified=m.date_modified,
        is_part_of=m.is_part_of, in_language=m.in_language, namespace=m.namespace,
        article_count=3, event_counts={"update": 3}, size=m.size,
        uncompressed_size=m.uncompressed_size, sha256=m.sha256,
        content_root_hash=m.content_root_hash, chunks=m.chunks)))
    _keys_cover(batch, json.loads((TESTDATA / "batch.json").read_text()), "batch")
    code = {"identifier": "wiki", "name": CODES["wiki"][0], "description": CODES["wiki"][1]}
    _keys_cover(code, json.loads((TESTDATA / "code.json").read_text()), "code")
    namespace = {"identifier": 6, "name": NAMESPACES[6][0], "description": NAMESPACES[6][1]}
    _keys_cover(namespace, json.loads((TESTDATA / "namespace.json").read_text()), "namespace")
    _keys_cover(language_view("en"), json.loads((TESTDATA / "language.json").read_text()),
                "language")
