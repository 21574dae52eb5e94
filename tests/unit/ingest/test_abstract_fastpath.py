"""The abstract's fast path must give exactly what the mwparserfromhell path gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedserver.ingest.dump import read_dump
from feedserver.ingest.pages import PageConverter
from feedserver.ingest.wikitext import (
    _INNERMOST_BRACES,
    _INNERMOST_TABLE,
    _PROSELESS,
    WikitextAnalyzer,
    lead_section,
    strip_nested,
)
from feedserver.models import Article
from tests.conftest import DUMPS

EN = WikitextAnalyzer({0: "", 6: "File", 10: "Template", 14: "Category"}, "https://en.wikipedia.org")
REAL = [
    DUMPS / "gensim-4.4.0" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2",
]


def prepared_lead(analyzer: WikitextAnalyzer, text: str) -> str:
    """The lead as ``abstract`` hands it to the strip step."""
    lead = lead_section(analyzer.clean(text))
    lead = strip_nested(lead, _INNERMOST_BRACES)
    lead = strip_nested(lead, _INNERMOST_TABLE)
    return _PROSELESS.sub("", lead)


@pytest.mark.parametrize("lead", [
    "'''Pear''' is a [[tree|plant]] of the [[genus]].",
    "[[File:Pear.jpg|thumb|A [[pear]] tree]]\n'''Pear''' is a fruit.\n\n\n\nMore.",
    "Text [[Category:Fruit]] [[de:Birne]] [[:Category:Shown]] [[a|b|c]] [[x|]]",
    "Nested [[a|b [[Category:X]] c]] stays with the parser.",
    "[[http://example.org]] and [[mailto:me]] are external links to mwparserfromhell.",
    "Entities&nbsp;and <b>tags</b> go to the parser; so do [single] brackets.",
    "* a list item\n: indented\n----\n= Heading =",
    "[[ ]] empty titles, [[a\nb]] broken links, [[File:x|[[y|[[z]]]]]] deep nesting.",
    "http://bare.example.org/x, trailing.",
])
def test_fast_path_equals_parser_or_declines(lead: str) -> None:
    fast = EN._strip_simple(lead)
    if fast is not None:
        assert fast == EN._strip_parsed(lead)


def test_fast_path_taken_for_plain_leads() -> None:
    assert EN._strip_simple("A [[b|c]] [[File:x.jpg|thumb|[[d]]]] e.") == "A c  e."
    assert EN._strip_simple("A &amp; b") is None


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_fast_path_agrees_with_parser_on_real_pages(path: Path) -> None:
    info, records = read_dump(path)
    analyzer = PageConverter(info).analyzer
    fast = 0
    for record in records:
        if not isinstance(record, Article) or record.article_body is None:
            continue
        if record.version is None or record.version.content_model != "wikitext":
            continue
        lead = prepared_lead(analyzer, record.article_body.wikitext or "")
        if not lead.strip():
            continue
        simple = analyzer._strip_simple(lead)
        if simple is not None:
            fast += 1
            assert simple == analyzer._strip_parsed(lead), record.name
    assert fast > 50  # most leads take the fast path
