"""Wikitable markup (``{| … |}``) -> ``Table`` records, and a sentinel line in the text.

Rows start at ``|-``; cells at ``|``/``||`` and header cells at ``!``/``!!``; ``attrs | content``
splits a cell's attributes from its content. Spans are expanded into a rectangular grid as a
browser lays them out (a cell spanning two columns fills both). Leading rows made only of
header cells become ``headers``; rows marked ``sortbottom`` become ``footers``. A table inside
a cell becomes that cell's ``nested_table``. ``confidence_score`` is the share of rows whose
width equals the most common width: 1.0 for a clean grid, lower for ragged markup.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from feedserver.ingest.structured.inline import finish, markup
from feedserver.ingest.structured.records import Citation, Table, TableCell
from feedserver.ingest.structured.scan import TABLE, TABLE_END
from feedserver.ingest.structured.state import PageState

# A fence starts a line. "^" with re.M tries a match at every position of the page; a
# pattern starting with "\n" is searched for that character first (the first line apart).
_FENCE = re.compile(r"\n[ \t:]*(\{\||\|\})")
_FIRST_FENCE = re.compile(r"[ \t:]*(\{\||\|\})")
_SPAN = re.compile(r"""\b(rowspan|colspan)\s*=\s*["']?\s*(\d+)""", re.I)
_NESTED = re.compile("\ue002(\\d+)\ue003")
_MAX_COLSPAN = 1000
_MAX_ROWSPAN = 65534
_MAX_CELLS = 50_000  # per table, after span expansion

_Cell = tuple[str, bool, int, int]  # (content, header, colspan, rowspan)


def take_tables(text: str, state: PageState) -> str:
    """Every table replaced by a line holding its sentinel."""
    if "{|" not in text:
        return text
    spans = _table_spans(text, state)
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, body_start, body_end, end in spans:
        out.append(text[last:start])
        table = _parse(text[body_start:body_end], state, text[start:body_start])
        if table is not None:
            out.append(f"\n{TABLE}{table}{TABLE_END}\n")
        last = end
    out.append(text[last:])
    return "".join(out)


def _table_spans(text: str, state: PageState) -> list[tuple[int, int, int, int]]:
    """Outermost tables as (start, start of body, end of body, end)."""
    spans = []
    depth = 0
    start = body = 0
    for line_start, fence, fence_end in _fences(text):
        if fence == "{|":
            if depth == 0:
                start = line_start
                line_end = text.find("\n", fence_end)
                body = len(text) if line_end < 0 else line_end
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                spans.append((start, body, line_start, fence_end))
    if depth:
        state.problems.add("unclosed_table")
        spans.append((start, body, len(text), len(text)))
    return spans


def _fences(text: str) -> Iterator[tuple[int, str, int]]:
    """(start of the line, fence, end of the fence) of every line starting with a fence."""
    first = _FIRST_FENCE.match(text)
    if first is not None:
        yield 0, first.group(1), first.end()
    for match in _FENCE.finditer(text):
        yield match.start() + 1, match.group(1), match.end()


def _parse(body: str, state: PageState, opening: str) -> int | None:
    """Parse one table body; register it (and its nested tables); return its index."""
    if "{|" in body:
        body = take_tables(body, state)
    caption = ""
    rows: list[tuple[list[_Cell], bool]] = []
    cells: list[_Cell] = []
    footer = False
    for line in body.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("|+"):
            caption = _content(stripped[2:])
        elif stripped.startswith("|-"):
            if cells:
                rows.append((cells, footer))
            cells, footer = [], "sortbottom" in stripped
        elif stripped.startswith("|}"):
            continue
        elif stripped.startswith(("|", "!")):
            header = stripped[0] == "!"
            separators = r"\|\||!!" if header else r"\|\|"
            for raw in re.split(separators, stripped[1:]) if "[[" not in stripped else (
                    _split_outside_links(stripped[1:], "!!" if header else "||")):
                cells.append(_cell(raw, header))
        elif cells:  # a cell's content continues on the next line
            content, header, colspan, rowspan = cells[-1]
            cells[-1] = (content + "\n" + line, header, colspan, rowspan)
    if cells:
        rows.append((cells, footer))
    if not rows:
        return None
    return _register(rows, caption, state)


_CELL_SPLIT = re.compile(r"\[\[|\]\]|\|\||!!")


def _split_outside_links(text: str, separator: str) -> list[str]:
    """Split cells on ``||`` (and ``!!`` in header lines) outside ``[[links]]``."""
    parts, depth, start = [], 0, 0
    for match in _CELL_SPLIT.finditer(text):
        mark = match.group()
        if mark == "[[":
            depth += 1
        elif mark == "]]":
            depth = max(0, depth - 1)
        elif depth == 0 and (mark == "||" or mark == separator):
            parts.append(text[start:match.start()])
            start = match.end()
    parts.append(text[start:])
    return parts


def _cell(raw: str, header: bool) -> _Cell:
    colspan = rowspan = 1
    attrs, content = _attributes(raw)
    if attrs:
        for key, number in _SPAN.findall(attrs):
            if key.lower() == "colspan":
                colspan = max(1, min(int(number[:6]), _MAX_COLSPAN))
            else:
                rowspan = max(1, min(int(number[:6]), _MAX_ROWSPAN))
    return content, header, colspan, rowspan


def _attributes(raw: str) -> tuple[str, str]:
    """``style="x" | text`` -> (attributes, content); a pipe inside a link is not one."""
    bar = raw.find("|")
    if bar < 0:
        return "", raw
    link = raw.find("[[")
    if 0 <= link < bar:
        return "", raw
    return raw[:bar], raw[bar + 1:]


def _content(raw: str) -> str:
    return _attributes(raw)[1]


def _register(rows: list[tuple[list[_Cell], bool]], caption: str, state: PageState) -> int:
    index = len(state.tables)
    identifier = f"table-{index + 1}"
    table = Table(identifier=identifier)
    state.tables.append(table)  # nested tables were registered first, by take_tables
    citations: list[Citation] = []
    grid: list[tuple[list[TableCell], bool, bool]] = []  # (cells, all headers, footer)
    pending: dict[int, tuple[int, TableCell]] = {}
    total = 0
    for cells, footer in rows:
        out: list[TableCell] = []
        all_headers = True
        column = 0
        for content, header, colspan, rowspan in cells:
            column = _fill(out, pending, column)
            cell = _render(content, state, citations)
            all_headers = all_headers and header
            for _ in range(colspan):
                out.append(cell)
                if rowspan > 1:
                    pending[column] = (rowspan - 1, cell)
                column += 1
        _fill(out, pending, column)
        total += len(out)
        if total > _MAX_CELLS:
            state.problems.add("table_too_large")
            break
        grid.append((out, all_headers, footer))
    headers: list[list[TableCell]] = []
    body: list[list[TableCell]] = []
    footers: list[list[TableCell]] = []
    for cells_out, all_headers, footer in grid:
        if footer:
            footers.append(cells_out)
        elif all_headers and not body:
            headers.append(cells_out)
        else:
            body.append(cells_out)
    widths = Counter(len(r) for r in headers + body + footers)
    score = widths.most_common(1)[0][1] / sum(widths.values()) if widths else 0.0
    table.headers = headers or None
    table.rows = body or None
    table.footers = footers or None
    table.confidence_score = round(score, 2)
    if citations:
        state.table_citations[identifier] = citations
    if caption:
        state.table_captions[identifier] = caption
    return index


def _fill(out: list[TableCell], pending: dict[int, tuple[int, TableCell]], column: int) -> int:
    while column in pending:
        left, cell = pending[column]
        out.append(cell)
        if left > 1:
            pending[column] = (left - 1, cell)
        else:
            del pending[column]
        column += 1
    return column


def _render(content: str, state: PageState, citations: list[Citation]) -> TableCell:
    nested = None
    if TABLE in content:
        found = _NESTED.search(content)
        if found:
            nested = state.tables[int(found.group(1))]
        content = _NESTED.sub(" ", content)
    rendered = finish(markup(content, state), state, with_images=False)
    if rendered.citations:
        citations.extend(rendered.citations)
    return TableCell(value=rendered.value or None, nested_table=nested)
