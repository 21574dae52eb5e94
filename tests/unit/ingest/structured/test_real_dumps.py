"""Invariants on every page of every real shared dump (enwiki sample, Greek Wikivoyage, the
small test wikis, the enwiki table-markup pages): never raises, no markup in any value, every
heading becomes a section, every <ref> becomes a reference and every reference is cited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from feedserver.ingest.structured import Part, StructuredResult, structured_content
from tests.unit.ingest.structured.pages import ALL_DUMPS, TABLE_MARKUP, Page, pages

# What must never be left in a value (the list, plus our private sentinels).
LEAK = re.compile(r"\{\{|\[\[|<ref|'''|[\ue000-\ue00f]", re.I)
# Fields holding URLs, identifiers or the article's own metadata (edit summaries are wikitext
# by nature and WME ships them as they are): not parsed values.
NOT_VALUES = {"url", "content_url", "identifier", "version", "event", "license", "is_part_of",
              "in_language"}
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_LITERAL = re.compile(
    r"<(nowiki|pre|syntaxhighlight|source|math)\b[^>]*?(?:/>|>.*?(?:</\1\s*>|\Z))", re.S | re.I)
_REF = re.compile(r"<ref\b[^>/]*/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_HEADING = re.compile(r"^(=+)(.*?)(=+)[ \t]*$")
_TABLE_OPEN = re.compile(r"^[ \t:]*\{\|")
_TABLE_CLOSE = re.compile(r"^[ \t]*\|\}")
_NAMED_REF = re.compile(r"""<ref\b[^>]*?\bname\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'/>]+))""",
                        re.I)
_CONTENT_REF = re.compile(r"<ref\b([^>/]*)>(.*?)</ref\s*>", re.S | re.I)


def _dump_ids(path: Any) -> str:
    return str(path.name)


@pytest.fixture(scope="module", params=[*ALL_DUMPS, TABLE_MARKUP], ids=_dump_ids)
def results(request: pytest.FixtureRequest) -> list[tuple[Page, StructuredResult]]:
    return [(page, structured_content(page.article, namespaces=page.namespaces))
            for page in pages(request.param)]


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in NOT_VALUES:
                yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str):
        yield key, value


def _walk(parts: list[Part] | None) -> Iterator[Part]:
    for part in parts or ():
        yield part
        yield from _walk(part.has_parts)


def _wikitext(page: Page) -> str | None:
    article = page.article
    model = article.version.content_model if article.version else None
    if model not in (None, "wikitext") or not article.article_body:
        return None
    return article.article_body.wikitext or None


def top_level_headings(text: str) -> int:
    """Heading lines outside templates, tables, refs, comments and literal blocks: an
    independent line scanner (not the parser under test)."""
    text = _REF.sub("", _LITERAL.sub("", _COMMENT.sub("", text)))
    braces = tables = count = 0
    for line in text.split("\n"):
        found = _HEADING.match(line)
        if found and braces == 0 and tables == 0:
            level = min(len(found.group(1)), len(found.group(3)))
            if (found.group(1)[level:] + found.group(2) + found.group(3)[level:]).strip():
                count += 1
        braces = max(0, braces + line.count("{{") - line.count("}}"))
        if _TABLE_OPEN.match(line):
            tables += 1
        elif _TABLE_CLOSE.match(line) and tables:
            tables -= 1
    return count


def test_every_page_gives_a_record(results: list[tuple[Page, StructuredResult]]) -> None:
    assert results
    for page, result in results:
        assert result.content.name == page.article.name
        assert result.degraded == bool(result.problems)
        msgspec.json.encode(result)  # every record encodes


def test_no_markup_in_any_value(results: list[tuple[Page, StructuredResult]]) -> None:
    for page, result in results:
        for key, value in _strings(msgspec.to_builtins(result.content)):
            assert not LEAK.search(value), (page.article.name, key, value[:200])
        assert not LEAK.search(result.text), page.article.name


def test_every_heading_becomes_a_section(results: list[tuple[Page, StructuredResult]]) -> None:
    for page, result in results:
        text = _wikitext(page)
        if text is None:
            continue
        sections = [p for p in _walk(result.content.sections) if p.type == "section"]
        lead = result.content.sections[0] if result.content.sections else None
        ours = len(sections) - (1 if lead is not None and lead.name == "Abstract" else 0)
        expected = top_level_headings(text)
        if "unbalanced_templates" in result.problems:
            # a "{{" never closed is text to MediaWiki (and to us): the headings after it
            # stay headings, while the simple scanner above thinks they are in a template
            assert ours >= expected, page.article.name
        else:
            assert ours == expected, page.article.name


def test_every_ref_is_a_cited_reference(results: list[tuple[Page, StructuredResult]]) -> None:
    for page, result in results:
        text = _wikitext(page)
        references = result.content.references or []
        identifiers = {r.identifier for r in references}
        citations = [c for p in _walk([*(result.content.sections or []),
                                       *(result.content.infoboxes or [])])
                     for c in p.citations or ()]
        # every citation points at a reference
        assert {c.identifier for c in citations} <= identifiers, page.article.name
        # every reference is cited, in the text or inside another reference's text
        cited = {c.identifier for c in citations}
        for reference in references:
            assert reference.identifier in cited or reference.parent_reference, (
                page.article.name, reference.identifier)
        if text is None:
            continue
        cleaned = _LITERAL.sub("", _COMMENT.sub("", text))
        # every named ref has its reference
        for groups in _NAMED_REF.findall(cleaned):
            name = "_".join("".join(groups).split())
            if name:
                assert any(i.startswith(f"cite_note-{name}-") for i in identifiers), (
                    page.article.name, name)
        # every unnamed <ref>…</ref> is a reference of its own
        unnamed = sum(1 for attrs, body in _CONTENT_REF.findall(cleaned)
                      if "name" not in attrs.lower() and body.strip())
        assert sum(1 for r in references if r.identifier.count("-") == 1) >= unnamed, (
            page.article.name)
