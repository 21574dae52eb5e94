"""``advance_snapshot`` also advances the Structured Contents version: only changed pages are
parsed again, and the result equals Structured Contents made from the new article version."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from feedserver.config import Settings, load_settings
from feedserver.feeds.diffs.advance import advance_snapshot
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.ingest.structured import StructuredContent, structured_content
from feedserver.metrics import Metrics
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.unit.feeds.diffs.test_advance import ID, INFO, article, change

DECODER = msgspec.json.Decoder(StructuredContent)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=900)


def _advance(settings: Settings, tmp_path: Path, *, structured_v1: bool, metrics: Metrics
             ) -> FilesystemBlobStore:
    blobs = FilesystemBlobStore(settings.blob_root)
    first = settings if structured_v1 else msgspec.structs.replace(settings,
                                                                    structured_namespaces=[])
    build_from_records(INFO, [article(i) for i in range(1, 11)], blobs, first)
    v1 = SnapshotStore(blobs).manifest(ID)
    state = StateStore(SQLiteDatabase(tmp_path / "state.db"))
    after = v1.date_modified + timedelta(seconds=1)
    state.apply_many([
        change(article(2, rev=5, text="== Edited ==\n{{Infobox x|a=[[B]]}}Two, edited."),
               "edit", after),
        change(article(3, rev=1), "delete", after),
        change(article(11, rev=7, text="A new page with a {{broken template"), "create", after),
        change(article(5, rev=1, text="same revision, ignored"), "edit", after),
    ])
    done = advance_snapshot(blobs, settings, state, ID, until=after + timedelta(seconds=1),
                            metrics=metrics)
    assert done is not None and done.structured is not None
    assert done.structured.structured is not None
    assert done.structured.structured.article_version == done.manifest.version
    return blobs


@pytest.mark.parametrize("structured_v1", [True, False])
def test_advance_gives_the_structured_contents_of_the_new_articles(
        settings: Settings, tmp_path: Path, structured_v1: bool) -> None:
    # With a Structured Contents version 1 only the changed pages are parsed; without one
    # (it was not built) every page of article version 2 is: the records are the same.
    metrics = Metrics(CollectorRegistry())
    blobs = _advance(settings, tmp_path, structured_v1=structured_v1, metrics=metrics)
    articles = list(SnapshotStore(blobs).iter_articles(SnapshotStore(blobs).manifest(ID)))
    store = SnapshotStore(blobs, STRUCTURED_PREFIX)
    latest = store.manifest(ID)
    store.verify(latest)
    got = [DECODER.decode(line) for line in store.iter_lines(latest)]
    assert got == [structured_content(a, namespaces=INFO.namespaces).content for a in articles]
    assert [g.identifier for g in got] == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    info = latest.structured
    assert info is not None
    parsed = 2 if structured_v1 else 10  # pages 2 and 11, or every page
    # Page 11's template is never closed: one degraded page.
    assert (info.parsed, info.degraded) == (parsed, 1)
    assert info.problems["unbalanced_templates"] == 1
    sample = metrics.registry.get_sample_value
    assert sample("feedserver_structured_pages_total",
                  {"source": "advance", "result": "ok"}) == parsed - 1
    assert latest.version == (2 if structured_v1 else 1)


def test_unchanged_records_are_copied_byte_for_byte(settings: Settings, tmp_path: Path
                                                    ) -> None:
    blobs = _advance(settings, tmp_path, structured_v1=True, metrics=Metrics(CollectorRegistry()))
    store = SnapshotStore(blobs, STRUCTURED_PREFIX)
    before = {DECODER.decode(line).identifier: line
              for line in store.iter_lines(store.manifest(ID, 1))}
    after = {DECODER.decode(line).identifier: line
             for line in store.iter_lines(store.manifest(ID, 2))}
    assert {k for k in after if after[k] != before.get(k)} == {2, 11}
