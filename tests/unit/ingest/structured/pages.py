"""Every page of the real shared dumps as Articles, read once per test session."""

from __future__ import annotations

import bz2
import functools
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from feedserver.ingest.dump import read_dump
from feedserver.models import Article, ArticleBody, Namespace, Project
from tests.conftest import DUMPS

ENWIKI = (DUMPS / "gensim-4.4.0"
          / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
GREEK = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
# Five enwiki pages of heavy table markup; the file has no <siteinfo>, so the dump reader
# rejects it (as it should): the pages are read here with ElementTree instead.
TABLE_MARKUP = DUMPS / "gensim-4.4.0" / "enwiki-table-markup.xml.bz2"
SMALL = [
    DUMPS / "gensim-4.4.0" / "testcorpus.xml.bz2",
    DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.xml",
    DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.Simplewiki.Sample.xml",
    DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.Commonswiki.Sample.xml",
    DUMPS / "pywikibot" / "pair-0.10.xml",
    DUMPS / "pywikibot" / "article-pear.xml",
    DUMPS / "pywikibot" / "article-pear-0.10.xml",
]
ALL_DUMPS = [ENWIKI, GREEK, *SMALL]


class Page(msgspec.Struct, frozen=True):
    source: str
    article: Article
    namespaces: dict[int, str]


@functools.cache
def pages(path: Path) -> tuple[Page, ...]:
    if path == TABLE_MARKUP:
        return tuple(_table_markup_pages())
    info, records = read_dump(path)
    return tuple(Page(source=path.name, article=r, namespaces=info.namespaces)
                 for r in records if isinstance(r, Article))


def all_pages() -> Iterator[Page]:
    for path in (*ALL_DUMPS, TABLE_MARKUP):
        yield from pages(path)


def find(path: Path, name: str) -> Page:
    for page in pages(path):
        if page.article.name == name:
            return page
    raise LookupError(f"{name} not in {path.name}")


def _table_markup_pages() -> Iterator[Page]:
    ns = "{http://www.mediawiki.org/xml/export-0.10/}"
    # the shared test data is trusted input
    root = ET.fromstring(bz2.decompress(TABLE_MARKUP.read_bytes()))  # noqa: S314
    project = Project(identifier="enwiki", url="https://en.wikipedia.org")
    for page in root.iter(f"{ns}page"):
        fields: dict[str, Any] = {
            "title": page.findtext(f"{ns}title") or "",
            "id": int(page.findtext(f"{ns}id") or 0),
            "text": page.findtext(f"{ns}revision/{ns}text") or "",
        }
        article = Article(name=fields["title"], identifier=fields["id"],
                          namespace=Namespace(identifier=0), is_part_of=project,
                          article_body=ArticleBody(wikitext=fields["text"]))
        yield Page(source=TABLE_MARKUP.name, article=article, namespaces={})
