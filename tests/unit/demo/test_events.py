"""The demo's self-made page_change events decode and map like real ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from feedserver.demo.dump import write_demo_dump
from feedserver.demo.events import demo_events
from feedserver.ingest.dump import read_dump
from feedserver.ingest.events import changes_from_json
from feedserver.models import Article


def test_demo_events_map_to_edits_a_creation_and_a_deletion(tmp_path: Path) -> None:
    _, records = read_dump(write_demo_dump(tmp_path / "demo.xml.bz2", pages=5))
    articles = [r for r in records if isinstance(r, Article) and r.namespace.identifier == 0]
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    lines = demo_events(articles, now, edits=7)
    changes = [c for line in lines for c in changes_from_json(line)]
    kinds = [c.article.event.type for c in changes if c.article.event is not None]
    assert kinds == ["update"] * 8 + ["delete"]
    first = changes[0].article
    assert first.name == articles[0].name and first.article_body is not None
    assert first.version is not None and articles[0].version is not None
    assert first.version.identifier > max(a.version.identifier for a in articles if a.version)
    assert changes[-1].article.name == articles[-1].name
    assert max(c.article.date_modified for c in changes if c.article.date_modified) <= now
    assert demo_events([], now) == []
