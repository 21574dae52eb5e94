"""Lines of processed text -> the ``sections`` tree of parts, and its plain-text rendering.

Headings open sections (nested by level; the text before the first heading is the lead,
named ``Abstract`` as WME names it). Inside a section: consecutive text lines make one
paragraph, a blank line ends it; ``*``/``#``/``;``/``:`` lines make (nested) lists; a table
sentinel line makes a ``table`` part; thumbnails and gallery images make ``image`` parts.
"""

from __future__ import annotations

import re

from feedserver.ingest.structured.inline import (
    caption_of,
    finish,
    image_record,
    markup,
    text_of,
)
from feedserver.ingest.structured.records import Image, Part, TableReference
from feedserver.ingest.structured.scan import HEADING, IMAGE, IMAGE_END, TABLE
from feedserver.ingest.structured.state import ImageRef, PageState

LEAD_NAME = "Abstract"
_HEADING = re.compile(r"^(=+)(.*?)(=+)[ \t]*$")
# A marked line that is a heading (``_HEADING`` on the line): literal first characters, a fast
# scan. A marked line that does not match stays text of its section.
_HEADING_LINE = re.compile("\n\ue00b(=+)(.*?)(=+)[ \t]*(?=\n|\\Z)")
# A heading is decided on the wikitext line, before links and tags are taken out: MediaWiki
# does not read "==A==[[Category:B]]" as a heading.
_HEADING_CANDIDATE = re.compile(r"\n=(?=[^\n]*=[ \t]*(?:\n|$))")
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n|$)")
# Lines that are not paragraph text: list items, tables, rules.
_BLOCK_MARK = re.compile("\n(?:[*#:;]|[ \t]*(?:\ue002|----))")
_LIST = re.compile(r"^[*#:;]+")
_BLOCK_FIRST = frozenset("*#:; \t-\ue002")
_TABLE_LINE = re.compile("^\ue002(\\d+)\ue003$")
_IMAGE = re.compile("\ue004(\\d+)\ue005")
_GALLERY = re.compile(r"<gallery\b[^>]*>((?:[^<]++|<(?!/gallery\s*>))*+)(?:</gallery\s*>|\Z)",
                      re.I)  # (possessive runs: see references._REF)
_MAX_LIST_DEPTH = 20


def take_galleries(text: str, state: PageState) -> str:
    """``<gallery>`` lines (``File:X.jpg|caption``) -> a line of block image sentinels."""
    if "<gallery" not in text and "<Gallery" not in text and "<GALLERY" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        marks = []
        for line in match.group(1).split("\n"):
            name, _, caption = line.strip().partition("|")
            prefix, colon, rest = name.partition(":")
            if colon and prefix.strip().casefold() in state.profile.file_prefixes:
                name = rest
            if name.strip():
                state.images.append(ImageRef(file=name, caption=caption, block=True))
                marks.append(f"{IMAGE}{len(state.images) - 1}{IMAGE_END}")
        return "\n" + "".join(marks) + "\n"

    return _GALLERY.sub(one, text)


def mark_headings(text: str) -> str:
    """Mark the heading lines (see ``_HEADING_CANDIDATE``); ``build_sections`` reads them."""
    if "=" not in text:
        return text
    return _HEADING_CANDIDATE.sub("\n" + HEADING + "=", "\n" + text)[1:]


def heading(line: str) -> tuple[int, str] | None:
    match = _HEADING.match(line)
    if match is None:
        return None
    left, inner, right = match.groups()
    level = min(len(left), len(right))
    inner = "=" * (len(left) - level) + inner + "=" * (len(right) - level)
    if not inner.strip():
        return None
    return level, inner


class _Blocks:
    """Collects one section's blocks line by line."""

    def __init__(self, state: PageState) -> None:
        self.state = state
        self.parts: list[Part] = []
        self.para: list[str] = []
        self.items: list[str] = []

    def line(self, line: str) -> None:
        if not line or line.isspace():
            self.flush_paragraph()
            self.flush_list()
            return
        first = line[0]
        if first in "*#:;":
            self.flush_paragraph()
            self.items.append(line)
            return
        self.flush_list()
        stripped = line.strip()
        if stripped[0] == TABLE:
            found = _TABLE_LINE.match(stripped)
            if found:
                self.flush_paragraph()
                self.parts.append(self._table(int(found.group(1))))
                return
        if stripped.startswith("----"):
            self.flush_paragraph()
            stripped = stripped.lstrip("-")
        self.para.append(stripped)

    def paragraph(self, raw: str) -> None:
        """One paragraph's text (lines joined), as a part."""
        if IMAGE in raw:
            raw = self._lift_images(raw)
        rendered = finish(raw, self.state)
        if rendered.value or rendered.citations or rendered.links or rendered.images:
            self.parts.append(Part(type="paragraph", value=rendered.value or None,
                                   links=rendered.links, citations=rendered.citations,
                                   images=rendered.images))

    def flush(self) -> list[Part]:
        self.flush_paragraph()
        self.flush_list()
        parts, self.parts = self.parts, []
        return parts

    def _table(self, index: int) -> Part:
        table = self.state.tables[index]
        caption = self.state.table_captions.get(table.identifier)
        rendered = finish(markup(caption, self.state), self.state) if caption else None
        citations = [*(rendered.citations or [] if rendered else []),
                     *self.state.table_citations.get(table.identifier, [])]
        return Part(type="table", name=rendered.value or None if rendered else None,
                    citations=citations or None,
                    table_references=[TableReference(identifier=table.identifier,
                                                     confidence_score=table.confidence_score)])

    def flush_paragraph(self) -> None:
        if not self.para:
            return
        raw = " ".join(self.para)
        self.para = []
        self.paragraph(raw)

    def _lift_images(self, raw: str) -> str:
        """Thumbnails and gallery images become image parts of their own, before the text."""
        def lift(match: re.Match[str]) -> str:
            ref = self.state.images[int(match.group(1))]
            if not ref.block:
                return match.group(0)
            self.parts.append(self._image(ref))
            return ""
        return _IMAGE.sub(lift, raw)

    def _image(self, ref: ImageRef) -> Part:
        caption = caption_of(ref, self.state)
        record = image_record(ref, self.state)
        images: list[Image] | None = [record] if record is not None else None
        return Part(type="image", value=caption.value or None, images=images,
                    links=caption.links, citations=caption.citations)

    def flush_list(self) -> None:
        if not self.items:
            return
        items, self.items = self.items, []
        root = Part(type="list", has_parts=[])
        stack: list[Part] = []
        for line in items:
            prefix = _LIST.match(line)
            depth = min(len(prefix.group()) if prefix else 1, _MAX_LIST_DEPTH)
            content = line[depth:] if prefix else line
            del stack[depth:]
            if not stack:
                stack.append(root)
            while len(stack) < depth:
                stack.append(_nested_list(stack[-1]))
            if IMAGE in content:
                content = self._lift_images(content)
            rendered = finish(content, self.state)
            item = Part(type="list_item", value=rendered.value or None, links=rendered.links,
                        citations=rendered.citations, images=rendered.images)
            _children(stack[-1]).append(item)
        self.parts.append(root)


def _children(part: Part) -> list[Part]:
    if part.has_parts is None:
        part.has_parts = []
    return part.has_parts


def _nested_list(parent: Part) -> Part:
    """A list inside the parent list's last item (made empty when there is none)."""
    items = _children(parent)
    if not items:
        items.append(Part(type="list_item"))
    nested = Part(type="list", has_parts=[])
    _children(items[-1]).append(nested)
    return nested


def build_sections(text: str, state: PageState) -> list[Part]:
    """Sections from the heading lines; the blocks of each section's body in between.

    Speed: the text is cut at headings and blank lines by regex (in C); only the chunks that
    hold list, table or rule lines are walked line by line."""
    lead = Part(type="section", name=LEAD_NAME)
    sections: list[Part] = []
    stack: list[tuple[int, Part]] = []
    blocks = _Blocks(state)
    current = lead
    text = "\n" + text
    position = 0
    names = state.profile.heading_texts  # (what text_of remembers; looked up here first)
    # Speed: Wikivoyage pages hold ~20 headings each, many of them with an empty body; the
    # loop does no more per heading than it must.
    for match in _HEADING_LINE.finditer(text):
        left, inner, right = match.groups()
        level = len(left)
        if level != len(right):  # "=== A ==": level 2, name "= A"
            level = min(level, len(right))
            inner = "=" * (len(left) - level) + inner + "=" * (len(right) - level)
        if not inner or inner.isspace():
            continue
        start = match.start()
        if start - position > 1:  # a body longer than "\n" (or nothing)
            _body(text[position:start], current, blocks)
        position = match.end()
        name = names.get(inner)
        if name is None:
            name = text_of(inner, state)
        current = Part(type="section", name=name or None)
        while stack and stack[-1][0] >= level:
            stack.pop()
        if stack:
            parent = stack[-1][1]
            if parent.has_parts is None:
                parent.has_parts = [current]
            else:
                parent.has_parts.append(current)
        else:
            sections.append(current)
        stack.append((level, current))
    _body(text[position:], current, blocks)
    return [lead, *sections] if lead.has_parts else sections


def _body(body: str, section: Part, blocks: _Blocks) -> None:
    if body.isspace() or not body:  # between two headings
        return
    for chunk in _BLANK_LINES.split(body):
        if not chunk or chunk.isspace():
            continue
        if chunk[0] not in _BLOCK_FIRST and _BLOCK_MARK.search(chunk) is None:
            blocks.paragraph(chunk)  # one paragraph: the common case
        else:
            for line in chunk.split("\n"):
                blocks.line(line)
            blocks.flush_paragraph()
            blocks.flush_list()
    parts = blocks.flush()
    if parts:
        _children(section).extend(parts)


def plain_text(sections: list[Part]) -> str:
    """Headings, paragraphs and list items, one block per paragraph (blank line between)."""
    out: list[str] = []
    for section in sections:
        _render(section, out, top=True)
    return "\n\n".join(out)


def _render(part: Part, out: list[str], *, top: bool = False) -> None:
    if part.type == "section":
        if part.name and not (top and part.name == LEAD_NAME and not out):
            out.append(part.name)
        for child in part.has_parts or ():
            _render(child, out)
    elif part.type == "paragraph" and part.value:
        out.append(part.value)
    elif part.type == "list":
        lines: list[str] = []
        _list_lines(part, lines)
        if lines:
            out.append("\n".join(lines))


def _list_lines(part: Part, lines: list[str]) -> None:
    for item in part.has_parts or ():
        if item.value:
            lines.append(item.value)
        for child in item.has_parts or ():
            if child.type == "list":
                _list_lines(child, lines)
