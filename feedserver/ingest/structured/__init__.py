"""Structured Contents and clean text from wikitext, for any wiki. Pure: no I/O.

``structured_content(article)`` -> ``StructuredResult`` (the WME-shaped record, the article's
clean text, and whether parsing degraded); ``clean_text(wikitext)`` -> the plain text alone.
See docs/structured-contents.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from feedserver.ingest.structured.build import ParsedPage, parse_page
from feedserver.ingest.structured.inline import clean
from feedserver.ingest.structured.profile import (
    DEFAULT_INFOBOX_NAMES,
    FALLBACK_INFOBOX_NAMES,
    WikiProfile,
    default_infobox_names,
    profile_for,
)
from feedserver.ingest.structured.records import (
    Attribution,
    Citation,
    Entity,
    Image,
    Part,
    PartLink,
    PartType,
    Reference,
    ReferenceText,
    StructuredContent,
    Table,
    TableCell,
    TableReference,
)
from feedserver.ingest.structured.state import PageState, Problem
from feedserver.models import Article

__all__ = [
    "DEFAULT_INFOBOX_NAMES", "FALLBACK_INFOBOX_NAMES", "Attribution", "Citation", "Entity",
    "Image", "Part", "PartLink", "PartType", "Problem", "Reference", "ReferenceText",
    "StructuredContent", "StructuredResult", "Table", "TableCell", "TableReference",
    "clean_text", "default_infobox_names", "structured_content",
]


class StructuredResult(msgspec.Struct, kw_only=True):
    """One article's Structured Contents, its clean text, and how parsing went.

    ``degraded`` is true when the wikitext was broken somewhere (``problems`` says how); the
    record then holds what could be parsed. Callers count ``problems`` in their metrics.
    """

    content: StructuredContent
    text: str
    degraded: bool = False
    problems: list[Problem] = msgspec.field(default_factory=list)


def _profile(base_url: str, language: str, wiki: str,
             infobox_names: Sequence[str] | None,
             namespaces: Mapping[int, str] | None) -> WikiProfile:
    names = default_infobox_names(wiki) if infobox_names is None else infobox_names
    return profile_for(base_url=base_url, language=language, infobox_names=names,
                       namespaces=namespaces)


def _base_url(article: Article) -> str:
    if article.is_part_of.url:
        return article.is_part_of.url
    if article.url and "/wiki/" in article.url:
        return article.url.split("/wiki/", 1)[0]
    return ""


def _is_wikitext(article: Article) -> bool:
    model = article.version.content_model if article.version else None
    return model in (None, "wikitext")


def structured_content(article: Article, *, infobox_names: Sequence[str] | None = None,
                       namespaces: Mapping[int, str] | None = None) -> StructuredResult:
    """The Structured Contents of ``article`` (its ``article_body.wikitext``).

    ``infobox_names``: template names that mark an infobox on this wiki (default:
    ``DEFAULT_INFOBOX_NAMES[wiki]``, else ``("Infobox",)``); ``namespaces``: the wiki's
    localized namespace names (``DumpInfo.namespaces``) so that localized ``File:`` and
    ``Category:`` prefixes are recognised. Never raises on any wikitext.
    """
    language = article.in_language.identifier if article.in_language else "en"
    profile = _profile(_base_url(article), language, article.is_part_of.identifier,
                       infobox_names, namespaces)
    wikitext = article.article_body.wikitext if article.article_body else None
    parsed = (parse_page(wikitext, profile, article.name) if wikitext and _is_wikitext(article)
              else ParsedPage(sections=[], infoboxes=[], references=[], tables=[]))
    abstract = article.abstract
    if abstract:
        abstract = clean(abstract, PageState(profile=profile, title=article.name)) or None
    elif parsed.sections and parsed.sections[0].name == "Abstract":
        abstract = "\n".join(p.value for p in parsed.sections[0].has_parts or ()
                             if p.type == "paragraph" and p.value) or None
    content = StructuredContent(
        name=article.name, identifier=article.identifier, abstract=abstract,
        description=parsed.description, version=article.version, event=article.event,
        url=article.url, date_created=article.date_created, date_modified=article.date_modified,
        is_part_of=article.is_part_of, in_language=article.in_language, image=parsed.image,
        visibility=article.visibility, license=article.license,
        infoboxes=parsed.infoboxes or None, sections=parsed.sections or None,
        references=parsed.references or None, tables=parsed.tables or None,
        attribution=Attribution(parsed_references_count=len(parsed.references),
                                last_revised=article.date_modified))
    return StructuredResult(content=content, text=parsed.text, degraded=bool(parsed.problems),
                            problems=parsed.problems)


def clean_text(wikitext: str, *, base_url: str = "", language: str = "en", title: str = "",
               infobox_names: Sequence[str] = FALLBACK_INFOBOX_NAMES,
               namespaces: Mapping[int, str] | None = None) -> str:
    """Plain text of a whole page: headings, paragraphs and list items, blank-line separated
    (templates, tables, infoboxes, references and images left out). Never raises."""
    profile = profile_for(base_url=base_url, language=language, infobox_names=infobox_names,
                          namespaces=namespaces)
    return parse_page(wikitext, profile, title).text
