"""Structured Contents records, named field by field after Wikimedia Enterprise's responses.

WME's Structured Content object is an Article's common fields plus ``description``,
``infoboxes``, ``sections``, ``references``, ``tables`` and ``attribution``. Infoboxes and
sections are trees of ``Part``. Empty fields are omitted on the wire (``Record``'s
``omit_defaults``), as WME does. Early beta responses used ``infobox`` and
``article_sections``; WME renamed them to ``infoboxes`` and ``sections``, which we follow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from feedserver.models import Event, Language, License, Project, Record, Version, Visibility

PartType = Literal["infobox", "section", "field", "paragraph", "list", "list_item", "image",
                   "table"]


class Entity(Record):
    """A Wikidata entity (``main_entity``, ``additional_entities``)."""

    identifier: str
    url: str | None = None
    aspects: list[str] | None = None


class Image(Record):
    content_url: str | None = None
    width: int | None = None
    height: int | None = None
    alternative_text: str | None = None
    caption: str | None = None


class PartLink(Record):
    """A link in a part's text: its URL and the text it was written as."""

    url: str | None = None
    text: str | None = None
    images: list[Image] | None = None


class Citation(Record):
    """An inline citation marker (``[1]``) pointing at ``references[].identifier``."""

    identifier: str
    group: str | None = None
    text: str | None = None


class TableReference(Record):
    """Where a ``table`` part stands in the text: the ``tables[].identifier`` it shows."""

    identifier: str
    confidence_score: float | None = None


class Part(Record):
    type: PartType
    name: str | None = None
    value: str | None = None
    values: list[str] | None = None
    has_parts: list[Part] | None = None
    images: list[Image] | None = None
    links: list[PartLink] | None = None
    citations: list[Citation] | None = None
    table_references: list[TableReference] | None = None


class ReferenceText(Record):
    value: str | None = None
    links: list[PartLink] | None = None


class Reference(Record):
    """One entry of the article's reference list (a ``<ref>`` definition)."""

    identifier: str
    group: str | None = None
    type: str | None = None
    metadata: dict[str, str] | None = None
    text: ReferenceText | None = None
    source: ReferenceText | None = None
    # the reference whose own text cites this one (a source cited inside a footnote)
    parent_reference: str | None = None


class TableCell(Record):
    value: str | None = None
    nested_table: Table | None = None


class Table(Record):
    identifier: str
    headers: list[list[TableCell]] | None = None
    rows: list[list[TableCell]] | None = None
    footers: list[list[TableCell]] | None = None
    confidence_score: float | None = None


class EditorsCount(Record):
    anonymous_count: int = 0
    registered_count: int = 0


class Attribution(Record):
    editors_count: EditorsCount | None = None
    parsed_references_count: int = 0
    last_revised: datetime | None = None


class StructuredContent(Record, kw_only=True):
    name: str
    identifier: int
    abstract: str | None = None
    description: str | None = None
    version: Version | None = None
    event: Event | None = None
    url: str | None = None
    date_created: datetime | None = None
    date_modified: datetime | None = None
    main_entity: Entity | None = None
    is_part_of: Project | None = None
    additional_entities: list[Entity] | None = None
    in_language: Language | None = None
    image: Image | None = None
    visibility: Visibility | None = None
    license: list[License] | None = None
    infoboxes: list[Part] | None = None
    sections: list[Part] | None = None
    references: list[Reference] | None = None
    tables: list[Table] | None = None
    attribution: Attribution | None = None
