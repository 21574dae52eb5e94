"""Article -> Structured Contents record and clean text: the passes in order, and the fallback.

Passes over one page (each linear, see the modules): raw blocks and comments (``scan``),
``<ref>`` tags (``references``), templates (``templates``), galleries and tables
(``blocks``, ``tables``), inline markup (``inline``), then lines into sections (``blocks``).
Whatever goes wrong inside is data, not an exception: the page is re-read by a plain-text
fallback and the result says so (``degraded``, ``problems``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

from feedserver.ingest.structured.blocks import (
    LEAD_NAME,
    build_sections,
    heading,
    mark_headings,
    plain_text,
    take_galleries,
)
from feedserver.ingest.structured.images import file_title, image
from feedserver.ingest.structured.inline import clean, finish, image_record, markup, plain
from feedserver.ingest.structured.profile import WikiProfile
from feedserver.ingest.structured.records import (
    Image,
    Part,
    Reference,
    ReferenceText,
    Table,
)
from feedserver.ingest.structured.references import identifier, take_refs
from feedserver.ingest.structured.scan import SENTINELS, strip_raw
from feedserver.ingest.structured.state import InfoboxRef, PageState, Problem
from feedserver.ingest.structured.tables import take_tables
from feedserver.ingest.structured.templates import expand

# "=== {{By air}} ===": a heading that is one parameterless template shows its name.
# (searched in "\n" + text: a literal first character, where "^" with re.M would try a match
# at every position)
_HEADING_TEMPLATE = re.compile(r"\n(=+)[ \t]*\{\{([^{}|\n]+)\}\}[ \t]*\1[ \t]*(?=\n|\Z)")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".svg", ".gif", ".tif", ".tiff", ".webp")
_MAX_REFERENCES = 10_000
_FALLBACK_TEMPLATE = re.compile(r"\{\{(?:[^{}]|\{(?!\{)|\}(?!\}))*\}\}")
_FALLBACK_LINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]]*)\]\]")
_FALLBACK_TAG = re.compile(r"<[^<>\n]{0,500}>")


class ParsedPage(msgspec.Struct, kw_only=True):
    """What one page's wikitext yields, before it is joined with the article's fields."""

    sections: list[Part]
    infoboxes: list[Part]
    references: list[Reference]
    tables: list[Table]
    description: str | None = None
    image: Image | None = None
    text: str = ""
    problems: list[Problem] = msgspec.field(default_factory=list)


def parse_page(wikitext: str, profile: WikiProfile, title: str) -> ParsedPage:
    """The whole page; never raises on any wikitext (a failure gives the fallback)."""
    state = PageState(profile=profile, title=title)
    try:
        return _parse(wikitext, state)
    except (Exception, RecursionError):  # parse failures are data: the fallback below
        fallback = PageState(profile=profile, title=title)
        sections = _fallback_sections(wikitext, fallback)
        problems = sorted({*state.problems, *fallback.problems, "parser_error"})
        return ParsedPage(sections=sections, infoboxes=[], references=[], tables=[],
                          text=plain_text(sections), problems=problems)


def _parse(text: str, state: PageState) -> ParsedPage:
    text = strip_raw(text)
    if "={{" in text or "= {{" in text:
        text = _HEADING_TEMPLATE.sub(r"\n\1 \2 \1", "\n" + text)[1:]
    text = take_refs(text, state)
    text = expand(text, state)
    text = take_galleries(text, state)
    text = take_tables(text, state)
    text = markup(mark_headings(text), state)
    sections = build_sections(text, state)
    infoboxes = [_infobox(found, state) for found in state.infoboxes]
    references = _references(state)
    description = None
    if state.description:
        description = _plain(state.description, state) or None
    return ParsedPage(sections=sections, infoboxes=infoboxes, references=references,
                      tables=list(state.tables), description=description,
                      image=_main_image(infoboxes, sections, state), text=plain_text(sections),
                      problems=sorted(state.problems))


def _plain(raw: str, state: PageState) -> str:
    return plain(raw, state, lambda text: expand(text, state, 1))


def _infobox(found: InfoboxRef, state: PageState) -> Part:
    fields: list[Part] = []
    for name, raw in found.params:
        if not raw:
            continue
        if raw.lower().endswith(_IMAGE_EXTENSIONS) and "[" not in raw and "{" not in raw:
            prefix, colon, rest = raw.partition(":")
            record = image(rest if colon and prefix.casefold() in state.profile.file_prefixes
                           else raw)
            if record is not None:
                fields.append(Part(type="image", name=name, images=[record]))
                continue
        rendered = finish(markup(expand(raw, state, 1), state), state)
        if rendered.value or rendered.images or rendered.citations:
            fields.append(Part(type="field", name=name, value=rendered.value or None,
                               links=rendered.links, citations=rendered.citations,
                               images=rendered.images))
    section = Part(type="section", has_parts=fields or None)
    return Part(type="infobox", name=found.name, has_parts=[section])


def _references(state: PageState) -> list[Reference]:
    out: list[Reference] = []
    parents: dict[str, str] = {}  # cited inside a reference's text -> that reference
    index = 0
    while index < len(state.refs) and index < _MAX_REFERENCES:
        entry = state.refs[index]
        index += 1
        kind, text, metadata = None, None, None
        if entry.content:
            state.cite_capture = None
            rendered = finish(markup(expand(entry.content, state, 1), state), state,
                              with_images=False)
            text = ReferenceText(value=rendered.value or None, links=rendered.links)
            for nested in rendered.citations or ():
                parents.setdefault(nested.identifier, identifier(entry))
            kind = "text"
            if state.cite_capture is not None:
                kind, metadata = state.cite_capture
        out.append(Reference(identifier=identifier(entry), group=entry.group or None,
                             type=kind, metadata=metadata or None, text=text))
    for reference in out:
        parent = parents.get(reference.identifier)
        if parent is not None and parent != reference.identifier:
            reference.parent_reference = parent
    return out


def _main_image(infoboxes: list[Part], sections: list[Part],
                state: PageState) -> Image | None:
    """The infobox's first image, else the first image in the text, else any file link."""
    for part in _walk([*infoboxes, *sections]):
        for found in part.images or ():
            if found.content_url:
                return Image(content_url=found.content_url)
    for ref in state.images:
        if file_title(ref.file) is not None:
            record = image_record(ref, state)
            if record is not None:
                return Image(content_url=record.content_url)
    return None


def _walk(parts: list[Part]) -> Iterator[Part]:
    """The parts in document order (each before its children), lazily: the caller stops at
    the first image. One explicit stack, not a generator per level (most parts are leaves)."""
    stack = parts[::-1]
    while stack:
        part = stack.pop()
        yield part
        if part.has_parts:
            stack.extend(reversed(part.has_parts))


def _fallback_sections(text: str, state: PageState) -> list[Part]:
    """Sections of plain paragraphs, every construct removed by bounded regex passes."""
    text = SENTINELS.sub("", text)
    for _ in range(30):
        text, count = _FALLBACK_TEMPLATE.subn("", text)
        if not count:
            break
    text = _FALLBACK_TAG.sub("", _FALLBACK_LINK.sub(r"\1", text))
    sections: list[Part] = []
    current = Part(type="section", name=LEAD_NAME)
    paragraph: list[str] = []

    def flush() -> None:
        value = clean(" ".join(paragraph), state)
        paragraph.clear()
        if value:
            if current.has_parts is None:
                current.has_parts = []
            current.has_parts.append(Part(type="paragraph", value=value))

    for line in text.split("\n"):
        found = heading(line) if line.startswith("=") else None
        if found is not None:
            flush()
            if current.has_parts or current.name != LEAD_NAME:
                sections.append(current)
            current = Part(type="section", name=clean(found[1], state) or None)
        elif line.strip():
            paragraph.append(line.strip().lstrip("*#:;"))
        else:
            flush()
    flush()
    if current.has_parts or current.name != LEAD_NAME:
        sections.append(current)
    return sections
