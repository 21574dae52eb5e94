"""Snapshot builds from the real dumps under shared/data (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from feedserver.config import Settings, load_settings
from feedserver.errors import DumpError
from feedserver.feeds.snapshots.build import build_snapshots
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.ingest.dump import read_dump
from feedserver.models import Article, Redirect
from feedserver.storage.blobs import FilesystemBlobStore
from tests.conftest import DUMPS

ENWIKI = DUMPS / "gensim-4.4.0/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TESTCORPUS = DUMPS / "gensim-4.4.0/testcorpus.xml.bz2"
PEAR = DUMPS / "pywikibot/article-pear-0.10.xml"


def make(tmp_path: Path, name: str, **overrides: object) -> tuple[Settings, FilesystemBlobStore]:
    settings = load_settings(env={}, data_dir=str(tmp_path / name), **overrides)
    return settings, FilesystemBlobStore(settings.blob_root)


def test_real_enwiki_dump(tmp_path: Path, shared_data: Path) -> None:
    settings, blobs = make(tmp_path, "a", chunk_size=512 * 1024)
    _, records = read_dump(ENWIKI)
    source = list(records)
    articles = {r.identifier: r for r in source if isinstance(r, Article)}
    # Dropped redirects are counted in their own namespace's manifest (ns 0 here).
    redirects = [r for r in source if isinstance(r, Redirect) and r.namespace == 0]
    manifests = build_snapshots([ENWIKI], blobs, settings)
    assert [m.identifier for m in manifests] == ["enwiki_namespace_0"]
    m = manifests[0]
    assert m.article_count == len(articles) and len(m.chunks) > 1
    assert m.redirect_count + m.redirects_dropped == len(redirects)
    assert m.source.dumps == [ENWIKI.name] and m.source.schema_versions == ["0.10"]
    store = SnapshotStore(blobs)
    store.verify(m)
    got = list(store.iter_articles(m))
    assert len(got) == len(articles)
    names = {a.name for a in got}
    attached = 0
    for article in got:
        expected = articles[article.identifier]
        links = article.redirects or []
        attached += len(links)
        assert msgspec.structs.replace(article, redirects=expected.redirects) == expected
    assert attached == m.redirect_count > 0
    assert m.redirects_dropped == sum(1 for r in redirects if r.target not in names)


def test_workers_give_the_same_content(tmp_path: Path, shared_data: Path) -> None:
    dumps = [TESTCORPUS, PEAR, TESTCORPUS]  # the repeat is deduplicated by page id
    s1, b1 = make(tmp_path, "one", chunk_size=4096)
    s2, b2 = make(tmp_path, "two", chunk_size=4096)
    [serial] = build_snapshots(dumps, b1, s1, workers=1)
    [parallel] = build_snapshots(dumps, b2, s2, workers=2)
    assert serial.content_root_hash == parallel.content_root_hash
    assert serial.article_count == parallel.article_count == 10
    SnapshotStore(b2).verify(parallel)


def test_truncated_real_dump_publishes_nothing(tmp_path: Path, shared_data: Path) -> None:
    settings, blobs = make(tmp_path, "t", chunk_size=64 * 1024)
    [first] = build_snapshots([TESTCORPUS], blobs, settings)
    truncated = tmp_path / "truncated.xml.bz2"
    data = ENWIKI.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DumpError):
        build_snapshots([truncated], blobs, settings)
    store = SnapshotStore(blobs)
    assert store.versions("enwiki_namespace_0") == [1]
    assert store.manifest("enwiki_namespace_0") == first
    assert sorted(blobs.list("snapshots/enwiki_namespace_0/")) == [
        "snapshots/enwiki_namespace_0/1/enwiki_namespace_0_chunk_0.ndjson.zst",
        "snapshots/enwiki_namespace_0/1/manifest.json",
        "snapshots/enwiki_namespace_0/1/wme/part_0.gz",
        "snapshots/enwiki_namespace_0/index.json",
    ]
    assert not any((settings.data_path / "tmp").iterdir())


def test_bad_dump_in_a_worker_fails_the_build(tmp_path: Path, shared_data: Path) -> None:
    settings, blobs = make(tmp_path, "w")
    bad = DUMPS / "gensim-4.4.0/enwiki-table-markup.xml.bz2"  # no <siteinfo>
    with pytest.raises(DumpError, match="siteinfo"):
        build_snapshots([TESTCORPUS, bad], blobs, settings, workers=2)
    assert SnapshotStore(blobs).identifiers() == []
    assert not any((settings.data_path / "tmp").iterdir())
