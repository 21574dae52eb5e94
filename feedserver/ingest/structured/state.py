"""The per-page parse state: what the passes take out of the text, indexed by sentinels."""

from __future__ import annotations

from typing import Literal

import msgspec

from feedserver.ingest.structured.profile import WikiProfile
from feedserver.ingest.structured.records import Citation, Table

Problem = Literal["unbalanced_templates", "template_depth", "unclosed_ref", "unclosed_table",
                  "table_too_large", "markup_leak", "parser_error"]


class ImageRef(msgspec.Struct):
    """A file link: the file name, its caption (with sentinels), and whether it stands as a
    block of its own (thumb, frame, aligned) or inline in the text (icons, flags)."""

    file: str
    caption: str = ""
    alt: str | None = None
    width: int | None = None
    block: bool = False


class RefEntry(msgspec.Struct):
    """One reference list entry: a ``<ref>`` definition (or its first named use)."""

    number: int  # global, in order of first use: the ``cite_note-…-N`` suffix
    label: int  # per group: the ``[N]`` shown in the text
    group: str
    name: str | None
    content: str | None = None  # raw wikitext (refs and templates already taken out)


class InfoboxRef(msgspec.Struct):
    name: str
    params: list[tuple[str, str]]  # (parameter name, raw value), in order


class PageState(msgspec.Struct, kw_only=True):
    profile: WikiProfile
    title: str
    links: list[str] = msgspec.field(default_factory=list)  # URLs
    images: list[ImageRef] = msgspec.field(default_factory=list)
    citations: list[Citation] = msgspec.field(default_factory=list)
    refs: list[RefEntry] = msgspec.field(default_factory=list)
    refs_by_name: dict[tuple[str, str], RefEntry] = msgspec.field(default_factory=dict)
    group_counts: dict[str, int] = msgspec.field(default_factory=dict)
    tables: list[Table] = msgspec.field(default_factory=list)
    table_citations: dict[str, list[Citation]] = msgspec.field(default_factory=dict)
    table_captions: dict[str, str] = msgspec.field(default_factory=dict)
    galleries: list[list[int]] = msgspec.field(default_factory=list)
    infoboxes: list[InfoboxRef] = msgspec.field(default_factory=list)
    # the first citation template met while a reference's text is rendered: (kind, params)
    cite_capture: tuple[str, dict[str, str]] | None = None
    description: str | None = None
    problems: set[Problem] = msgspec.field(default_factory=set)
