"""The per-page parse state: what the passes take out of the text, indexed by sentinels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from feedserver.ingest.structured.profile import WikiProfile
from feedserver.ingest.structured.records import Citation, Table

Problem = Literal["unbalanced_templates", "template_depth", "unclosed_ref", "unclosed_table",
                  "table_too_large", "markup_leak", "parser_error"]


@dataclass(slots=True)
class ImageRef:
    """A file link: the file name, its caption (with sentinels), and whether it stands as a
    block of its own (thumb, frame, aligned) or inline in the text (icons, flags)."""

    file: str
    caption: str = ""
    alt: str | None = None
    width: int | None = None
    block: bool = False


@dataclass(slots=True)
class RefEntry:
    """One reference list entry: a ``<ref>`` definition (or its first named use)."""

    number: int  # global, in order of first use: the ``cite_note-…-N`` suffix
    label: int  # per group: the ``[N]`` shown in the text
    group: str
    name: str | None
    content: str | None = None  # raw wikitext (refs and templates already taken out)


@dataclass(slots=True)
class InfoboxRef:
    name: str
    params: list[tuple[str, str]]  # (parameter name, raw value), in order


@dataclass(slots=True)
class PageState:
    profile: WikiProfile
    title: str
    links: list[str] = field(default_factory=list)  # URLs
    images: list[ImageRef] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    refs: list[RefEntry] = field(default_factory=list)
    refs_by_name: dict[tuple[str, str], RefEntry] = field(default_factory=dict)
    group_counts: dict[str, int] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    table_citations: dict[str, list[Citation]] = field(default_factory=dict)
    table_captions: dict[str, str] = field(default_factory=dict)
    galleries: list[list[int]] = field(default_factory=list)
    infoboxes: list[InfoboxRef] = field(default_factory=list)
    # the first citation template met while a reference's text is rendered: (kind, params)
    cite_capture: tuple[str, dict[str, str]] | None = None
    description: str | None = None
    problems: set[Problem] = field(default_factory=set)
