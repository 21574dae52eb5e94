"""``advance_snapshot``: version N+1 from version N plus state-store changes, and its diff."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from feedserver.config import Settings, load_settings
from feedserver.errors import InvalidParameter
from feedserver.feeds.diffs.advance import advance_snapshot
from feedserver.feeds.diffs.files import apply_files
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.ingest.dump import DumpInfo
from feedserver.ingest.events import ArticleChange, PageChangeKind, to_us
from feedserver.models import (
    Article,
    ArticleBody,
    ArticleKey,
    Event,
    EventType,
    Link,
    Namespace,
    Project,
    Version,
)
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase

INFO = DumpInfo(wiki="testwiki", site_name="Test", base_url="https://test.example",
                language="en", namespaces={0: ""}, schema_version="0.11", source="synthetic.xml")
ID = "testwiki_namespace_0"


def article(i: int, *, rev: int = 1, ns: int = 0, text: str = "") -> Article:
    return Article(
        name=f"Page {i}", identifier=i, namespace=Namespace(identifier=ns),
        is_part_of=Project(identifier="testwiki"), version=Version(identifier=rev),
        article_body=ArticleBody(wikitext=text or f"text of page {i} " * 10),
    )


def change(a: Article, kind: PageChangeKind, when: datetime) -> ArticleChange:
    etype: EventType = "delete" if kind == "delete" else "update"
    a.event = Event(identifier=f"e-{a.identifier}-{kind}", type=etype, date_published=when)
    rev = a.version.identifier if a.version else 0
    return ArticleChange(key=ArticleKey("testwiki", a.namespace.identifier, a.identifier),
                         article=a, source_kind=kind, revision=rev, changed_us=to_us(when))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=900)


def test_advance_builds_next_version_and_a_verifiable_diff(settings: Settings, tmp_path: Path
                                                           ) -> None:
    blobs = FilesystemBlobStore(settings.blob_root)
    v1_records = [article(i) for i in range(1, 11)]
    v1_records[1].redirects = [Link(name="Old two", url="https://test.example/Old_two")]
    build_from_records(INFO, v1_records, blobs, settings)
    store = SnapshotStore(blobs)
    v1 = store.manifest(ID)
    state = StateStore(SQLiteDatabase(tmp_path / "state.db"))
    after = v1.date_modified + timedelta(seconds=1)
    state.apply_many([
        change(article(2, rev=5, text="edited two"), "edit", after),
        change(article(3, rev=1), "delete", after),
        change(article(11, rev=7), "create", after),
        change(article(4, rev=1, ns=4), "move", after),  # moved to ns 4: ...
        change(article(4, rev=1), "delete", after),  # ... and gone from ns 0
        change(article(5, rev=1, text="same revision, ignored"), "edit", after),
    ])
    # A change before v1 was built is already in it (or older): never applied again.
    state.apply(change(article(6, rev=9), "edit", v1.date_modified - timedelta(days=1)))

    until = after + timedelta(seconds=1)
    done = advance_snapshot(blobs, settings, state, ID, until=until)
    assert done is not None
    v2 = done.manifest
    assert (v2.version, v2.events_until, v2.previous_version) == (2, until, 1)
    assert (done.diff.counts.add, done.diff.counts.update, done.diff.counts.delete) == (1, 1, 2)
    articles = {a.identifier: a for a in store.iter_articles(v2)}
    assert sorted(articles) == [1, 2, 5, 6, 7, 8, 9, 10, 11]
    assert articles[2].version is not None and articles[2].version.identifier == 5
    assert articles[2].redirects == v1_records[1].redirects  # kept from v1
    assert articles[6].version is not None and articles[6].version.identifier == 1
    store.verify(v2)  # the WME parts too: advance builds them like a dump build
    assert v2.representations and all(c.wme is not None for c in v2.chunks)

    base = tmp_path / "v1.zst"
    base.write_bytes(b"".join(blobs.get_bytes(c.key) for c in v1.chunks))
    diff = tmp_path / "d.zst"
    diff.write_bytes(b"".join(blobs.get_bytes(c.key) for c in done.diff.chunks))
    report, problems = apply_files(base, diff, done.diff, tmp_path / "v2.ndjson")
    assert problems == [] and report is not None
    assert report.content_root_hash == v2.content_root_hash

    # The next update starts where this one stopped: nothing new, nothing published.
    assert advance_snapshot(blobs, settings, state, ID, until=until + timedelta(1)) is None
    with pytest.raises(InvalidParameter):
        advance_snapshot(blobs, settings, state, ID, since=until, until=until)
    assert store.versions(ID) == [1, 2]
