"""Structured Contents snapshots built beside the article snapshots, from the same records."""

from __future__ import annotations

import bz2
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from feedserver.config import Settings, load_settings
from feedserver.demo.dump import SITEINFO, demo_pages
from feedserver.errors import DumpError
from feedserver.feeds.snapshots.build import build_dumps, build_from_records
from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, Manifest
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.ingest.dump import DumpInfo
from feedserver.ingest.structured import StructuredContent, structured_content
from feedserver.metrics import Metrics
from feedserver.models import Article, ArticleBody, Namespace, Project, Version
from feedserver.storage.blobs import FilesystemBlobStore

INFO = DumpInfo(wiki="testwiki", site_name="Test", base_url="https://test.example",
                language="en", namespaces={0: "", 6: "File", 10: "Template"},
                schema_version="0.11", source="synthetic.xml")
ID = "testwiki_namespace_0"
DECODER = msgspec.json.Decoder(StructuredContent)
# Broken on purpose: a template never closed, a table never closed.
BROKEN = "{{Infobox thing\n| name = x\n\n== History ==\nText [[Link]].\n{|\n| cell\n"


def article(i: int, *, rev: int = 1, ns: int = 0, text: str = "") -> Article:
    return Article(
        name=f"Page {i}" if ns == 0 else f"Template:Page {i}", identifier=i,
        namespace=Namespace(identifier=ns), is_part_of=Project(identifier="testwiki"),
        version=Version(identifier=rev),
        article_body=ArticleBody(wikitext=text or f"'''Page {i}''' is [[Some link|linked]].\n\n"
                                 f"== Section ==\nA paragraph of page {i}.<ref>A source.</ref>"
                                 "\n\n== References ==\n<references/>"),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=2000)


def _structured(blobs: FilesystemBlobStore, identifier: str = ID
                ) -> tuple[Manifest, list[StructuredContent]]:
    store = SnapshotStore(blobs, STRUCTURED_PREFIX)
    manifest = store.manifest(identifier)
    store.verify(manifest)  # chunk checksums, the download's, the content root hash
    return manifest, [DECODER.decode(line) for line in store.iter_lines(manifest)]


def test_a_build_publishes_structured_contents_of_its_articles(settings: Settings) -> None:
    blobs = FilesystemBlobStore(settings.blob_root)
    records = [article(i) for i in range(1, 30)] + [article(i, ns=10) for i in range(30, 33)]
    (v1,) = [m for m in build_from_records(INFO, records, blobs, settings)
             if m.identifier == ID]
    manifest, got = _structured(blobs)
    # One record per article of namespace 0, in the article snapshot's order, each what the
    # parser makes of that article (the build adds nothing and loses nothing).
    articles = list(SnapshotStore(blobs).iter_articles(v1))
    assert [g.identifier for g in got] == [a.identifier for a in articles]
    assert got == [structured_content(a, namespaces=INFO.namespaces).content for a in articles]
    assert len(manifest.chunks) > 1 and manifest.article_count == 29
    assert manifest.structured is not None
    assert manifest.structured.article_version == v1.version
    assert (manifest.structured.parsed, manifest.structured.degraded) == (29, 0)
    # Only the namespaces of settings.structured_namespaces (0 by default) get one.
    assert SnapshotStore(blobs, STRUCTURED_PREFIX).identifiers() == [ID]


def test_structured_follows_the_articles_dedupe(settings: Settings) -> None:
    # Two records of one page (several dump files): the highest revision wins in both feeds.
    blobs = FilesystemBlobStore(settings.blob_root)
    records = [article(1, rev=3, text="new text"), article(2), article(1, rev=2, text="old")]
    (v1,) = build_from_records(INFO, records, blobs, settings)
    _, got = _structured(blobs)
    kept = [(a.identifier, a.version.identifier if a.version else 0)
            for a in SnapshotStore(blobs).iter_articles(v1)]
    assert [(g.identifier, g.version.identifier if g.version else 0) for g in got] \
        == kept == [(1, 3), (2, 1)]


def test_broken_wikitext_is_counted_not_fatal(settings: Settings) -> None:
    blobs = FilesystemBlobStore(settings.blob_root)
    metrics = Metrics(CollectorRegistry())
    path = settings.data_path.parent / "broken.xml"
    pages = [article(1), article(2, text=BROKEN), article(3, text="{{{{{{{{" * 50)]
    path.write_text(_dump_xml(pages))
    built = build_dumps([path], blobs, settings, metrics=metrics)
    (manifest,) = built.structured
    _, got = _structured(blobs)
    assert [g.identifier for g in got] == [1, 2, 3]  # every page has its record
    info = manifest.structured
    assert info is not None and info.parsed == 3 and info.degraded == 2
    assert info.problems["unbalanced_templates"] == 2 and info.problems["unclosed_table"] == 1
    sample = metrics.registry.get_sample_value
    assert sample("feedserver_structured_pages_total", {"source": "build", "result": "ok"}) == 1
    assert sample("feedserver_structured_pages_total",
                  {"source": "build", "result": "degraded"}) == 2
    assert sample("feedserver_structured_problems_total",
                  {"source": "build", "problem": "unclosed_table"}) == 1


def test_no_structured_namespaces_builds_none(settings: Settings) -> None:
    blobs = FilesystemBlobStore(settings.blob_root)
    off = msgspec.structs.replace(settings, structured_namespaces=[])
    build_from_records(INFO, [article(1)], blobs, off)
    assert list(blobs.list(f"{STRUCTURED_PREFIX}/")) == []
    assert SnapshotStore(blobs).identifiers() == [ID]


def test_workers_build_the_same_structured_contents(tmp_path: Path) -> None:
    # Parts staged in worker processes (two dump files, two workers) give the same records,
    # in the same order, as one process: the same content root hash and the same bytes.
    head = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
            'xml:lang="en">\n' + SITEINFO)
    pages = list(demo_pages(120))
    files = []
    for k, part in enumerate((pages[:60], pages[60:])):
        path = tmp_path / f"part{k}.xml.bz2"
        path.write_bytes(bz2.compress((head + "".join(part) + "</mediawiki>\n").encode()))
        files.append(path)
    roots = []
    for workers in (1, 2):
        settings = load_settings(env={}, data_dir=str(tmp_path / f"var{workers}"),
                                 chunk_size=20_000)
        blobs = FilesystemBlobStore(settings.blob_root)
        built = build_dumps(files, blobs, settings, workers=workers)
        (manifest,) = built.structured
        assert manifest.article_count == sum(m.article_count for m in built.articles
                                             if m.namespace.identifier == 0)
        roots.append((manifest.content_root_hash, manifest.sha256))
    assert roots[0] == roots[1]


def _dump_xml(pages: list[Article]) -> str:
    body = "".join(
        f"<page><title>{a.name}</title><ns>{a.namespace.identifier}</ns><id>{a.identifier}</id>"
        f"<revision><id>{a.version.identifier if a.version else 1}</id>"
        "<timestamp>2024-01-01T00:00:00Z</timestamp><contributor><username>U</username>"
        "<id>1</id></contributor><model>wikitext</model><format>text/x-wiki</format>"
        f"<text xml:space=\"preserve\">{_escape(a.article_body.wikitext or '')}</text>"
        "</revision></page>\n" for a in pages if a.article_body)
    return ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
            'xml:lang="en">\n<siteinfo><sitename>Test</sitename><dbname>testwiki</dbname>'
            '<base>https://test.example/wiki/Main_Page</base><generator>MediaWiki</generator>'
            '<case>first-letter</case><namespaces><namespace key="0" case="first-letter" />'
            '</namespaces></siteinfo>\n' + body + "</mediawiki>\n")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_a_failed_build_publishes_no_structured_contents(settings: Settings) -> None:
    # A dump cut in the middle fails the build after pages were staged (and parsed): the tee
    # is aborted with the stage, and neither feed shows anything.
    blobs = FilesystemBlobStore(settings.blob_root)
    path = settings.data_path.parent / "cut.xml"
    whole = _dump_xml([article(i) for i in range(1, 40)])
    path.write_text(whole[: len(whole) * 2 // 3])
    with pytest.raises(DumpError):
        build_dumps([path], blobs, settings)
    assert list(blobs.list("")) == []
