"""Every real dump under shared/data/dumps ingests with the README's page counts."""

from __future__ import annotations

import bz2
import codecs
import functools
import gzip
from pathlib import Path

import msgspec
import pytest

from feedserver.errors import DumpError
from feedserver.ingest.dump import read_dump
from feedserver.models import Article, Redirect
from tests.conftest import DUMPS

SIMPLE_010 = DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.xml"
SIMPLE_011 = DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.Simplewiki.Sample.xml"
COMMONS = DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.Commonswiki.Sample.xml"
ENWIKI = (DUMPS / "gensim-4.4.0"
          / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
TABLE_MARKUP = DUMPS / "gensim-4.4.0" / "enwiki-table-markup.xml.bz2"
GREEK = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
PEAR_03 = DUMPS / "pywikibot" / "article-pear.xml"

# file -> (wiki, pages, redirects), from shared/data/README.md
EXPECTED = {
    ENWIKI: ("enwiki", 206, 100),
    DUMPS / "gensim-4.4.0" / "testcorpus.xml.bz2": ("enwiki", 9, None),
    GREEK: ("elwikivoyage", 2040, 240),
    SIMPLE_010: ("simplewiki", 2, 0),
    SIMPLE_011: ("simplewiki", 2, 0),
    COMMONS: ("commonswiki", 1, 0),
    DUMPS / "pywikibot" / "pair-0.10.xml": ("enwiki", 2, None),
    PEAR_03: ("enwiki", 1, 0),
    DUMPS / "pywikibot" / "article-pear-0.10.xml": ("enwiki", 1, 0),
}


def records(path: Path, **kwargs: object) -> list[Article | Redirect]:
    return list(read_dump(path, **kwargs)[1])  # type: ignore[arg-type]


def encoded(path: Path, **kwargs: object) -> list[bytes]:
    return [msgspec.json.encode(r) for r in records(path, **kwargs)]


@functools.cache
def cached(path: Path) -> tuple[object, list[Article | Redirect]]:
    """Each real file is read once per test session (the big ones take a second or two)."""
    info, stream = read_dump(path)
    return info, list(stream)


@pytest.fixture(scope="module")
def enwiki() -> list[Article | Redirect]:
    return cached(ENWIKI)[1]


@pytest.fixture(scope="module")
def greek() -> list[Article | Redirect]:
    return cached(GREEK)[1]


@pytest.mark.parametrize("path", list(EXPECTED), ids=lambda p: p.name[:40])
def test_every_dump_ingests_with_readme_counts(path: Path) -> None:
    wiki, pages, redirects = EXPECTED[path]
    info, got = cached(path)
    assert info.wiki == wiki  # type: ignore[attr-defined]
    assert len(got) == pages
    if redirects is not None:
        assert sum(isinstance(r, Redirect) for r in got) == redirects
    assert all(r.is_part_of.identifier == wiki for r in got if isinstance(r, Article))


def test_missing_siteinfo_is_a_clear_error() -> None:
    with pytest.raises(DumpError, match="siteinfo") as caught:
        read_dump(TABLE_MARKUP)
    assert TABLE_MARKUP.name in str(caught.value)
    assert "\n" not in str(caught.value)


def test_simplewiki_010_and_011_give_identical_records() -> None:
    assert read_dump(SIMPLE_010)[0].wiki == read_dump(SIMPLE_011)[0].wiki == "simplewiki"
    assert encoded(SIMPLE_010) == encoded(SIMPLE_011)


def test_history_dump_picks_latest_revision_with_creation_and_previous(
) -> None:
    user_page = records(SIMPLE_010)[0]
    assert isinstance(user_page, Article) and user_page.version is not None
    assert user_page.version.identifier == 5566832
    assert user_page.date_created is not None and user_page.date_created.year == 2006
    assert user_page.previous_version is not None
    assert user_page.previous_version.identifier == 4997179
    assert user_page.previous_version.number_of_characters == 33
    editor = user_page.version.editor
    assert editor is not None and editor.is_anonymous and editor.identifier is None
    assert user_page.url == "https://simple.wikipedia.org/wiki/User:Ryulong"


def test_revision_deleted_values_never_appear() -> None:
    # The dump holds revisions whose text/editor/comment were hidden; none is the latest, and
    # the values that *were* shown in other revisions must not leak into unrelated fields.
    blob = b"".join(encoded(SIMPLE_010))
    assert b"deleted" not in blob
    assert b'"visibility"' not in blob  # the chosen revisions hid nothing


def test_enwiki_sample_fields(enwiki: list[Article | Redirect]) -> None:
    articles = [r for r in enwiki if isinstance(r, Article)]
    assert len(articles) == 106
    anonymous = [a for a in articles if a.version and a.version.editor
                 and a.version.editor.is_anonymous]
    assert anonymous, "the sample has IP editors"
    lincoln = next(a for a in articles if a.name == "Abraham Lincoln")
    assert lincoln.abstract and lincoln.abstract.startswith("Abraham Lincoln (February 12, 1809")
    assert lincoln.categories and lincoln.categories[0].name == "Category:1809 births"
    assert lincoln.templates and "Template:Infobox officeholder" in {
        t.name for t in lincoln.templates}
    assert lincoln.url == "https://en.wikipedia.org/wiki/Abraham_Lincoln"
    assert lincoln.date_modified is not None and lincoln.date_modified.tzinfo is not None
    assert lincoln.date_created is None  # a pages-articles dump lacks the first revision
    body = lincoln.article_body
    assert lincoln.version is not None and body is not None and body.wikitext is not None
    assert lincoln.version.number_of_characters == len(body.wikitext)
    assert lincoln.version.size is not None
    assert lincoln.version.size.value == len(body.wikitext.encode())
    redirect = next(r for r in enwiki if isinstance(r, Redirect))
    assert redirect.target and redirect.url and redirect.url.startswith("https://en.wikipedia")


def test_templates_agree_with_mwparserfromhell(enwiki: list[Article | Redirect]) -> None:
    import mwparserfromhell

    from feedserver.ingest.wikitext import WikitextAnalyzer

    info = read_dump(ENWIKI)[0]
    analyzer = WikitextAnalyzer(info.namespaces, info.base_url)
    # A full mwparserfromhell parse is slow: the 40 first pages keep the test quick.
    for article in enwiki[:40]:
        if not isinstance(article, Article) or article.article_body is None:
            continue
        code = mwparserfromhell.parse(analyzer.clean(article.article_body.wikitext or ""))
        expected: dict[str, None] = {}
        for template in code.ifilter_templates():
            name = analyzer.template_name(str(template.name))
            if name is not None and "{" not in name:
                expected.setdefault(name)
        assert {t.name for t in article.templates or []} == set(expected), article.name


def test_greek_namespaces_models_and_localized_links(greek: list[Article | Redirect]) -> None:
    articles = [r for r in greek if isinstance(r, Article)]
    assert {a.namespace.identifier for a in greek if isinstance(a, Article)} >= {0, 4, 10, 14}
    models = {a.version.content_model for a in articles if a.version}
    assert {"wikitext", "css", "javascript", "Scribunto", "flow-board"} <= models
    for article in articles:
        assert article.version is not None
        if article.version.content_model != "wikitext":
            assert article.abstract is None and article.categories is None
            assert article.templates is None
    cats = [c.name for a in articles for c in a.categories or []]
    assert cats and all(c.startswith("Κατηγορία:") for c in cats)
    temps = [t.name for a in articles for t in a.templates or []]
    assert "Πρότυπο:Pagebanner" in temps
    empty = [a for a in articles if a.article_body and not a.article_body.wikitext]
    assert empty and all(a.abstract is None for a in empty)
    city = next(a for a in articles if a.namespace.identifier == 0 and a.abstract)
    assert city.url and city.url.startswith("https://el.wikivoyage.org/wiki/%CE")
    assert city.in_language is not None and city.in_language.identifier == "el"


def test_commons_multi_content_revisions_use_main_slot() -> None:
    (page,) = records(COMMONS)
    assert isinstance(page, Article) and page.article_body and page.version
    assert page.article_body.wikitext and "mediainfo" not in page.article_body.wikitext
    assert page.version.content_model == "wikitext"
    assert page.categories


def test_schema_03_without_ns_model_sha1() -> None:
    info, stream = read_dump(PEAR_03)
    (pear,) = list(stream)
    assert info.schema_version == "0.3" and info.base_url == "https://en.wikipedia.org"
    assert isinstance(pear, Article) and pear.version is not None
    assert pear.name == "Pear" and pear.namespace.identifier == 0
    assert pear.version.content_model == "wikitext" and pear.version.sha1 is None
    assert pear.date_created is not None and pear.date_created.year == 2002


def test_namespace_filter() -> None:
    got = records(GREEK, namespaces={14})
    assert got and all(
        (r.namespace if isinstance(r, Redirect) else r.namespace.identifier) == 14 for r in got)


def test_truncated_bz2_fails_while_iterating(tmp_path: Path) -> None:
    data = ENWIKI.read_bytes()
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DumpError, match=r"cut\.xml\.bz2.*truncated"):
        list(read_dump(cut)[1])


def test_corrupted_bz2_is_a_dump_error(tmp_path: Path) -> None:
    data = bytearray(ENWIKI.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    bad = tmp_path / "bad.bz2"
    bad.write_bytes(bytes(data))
    with pytest.raises(DumpError, match=r"bad\.bz2") as caught:
        list(read_dump(bad)[1])
    assert "\n" not in str(caught.value)


def test_gzip_recompression_gives_identical_records(tmp_path: Path) -> None:
    regz = tmp_path / "enwiki.xml.bz2"  # the extension lies: magic bytes decide
    regz.write_bytes(gzip.compress(bz2.decompress(ENWIKI.read_bytes()), compresslevel=1))
    assert encoded(regz) == [msgspec.json.encode(r) for r in cached(ENWIKI)[1]]


def test_utf16_reencoding_gives_identical_records(tmp_path: Path) -> None:
    text = SIMPLE_011.read_text(encoding="utf-8")
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        utf16 = tmp_path / f"simple-{codec}.xml"
        utf16.write_bytes(bom + text.encode(codec))
        assert encoded(utf16) == encoded(SIMPLE_011)


def test_truncated_gzip_and_plain_xml(tmp_path: Path) -> None:
    data = gzip.compress(SIMPLE_011.read_bytes())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DumpError, match=r"cut\.gz"):
        list(read_dump(cut)[1])
    raw = SIMPLE_011.read_bytes()
    plain = tmp_path / "cut.xml"
    plain.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(DumpError, match=r"cut\.xml.*malformed XML"):
        list(read_dump(plain)[1])
