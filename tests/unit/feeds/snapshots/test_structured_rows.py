"""Structured Contents as Parquet rows: the flattened trees give back the records exactly
(arbitrary trees by hypothesis, every real page of elwikivoyage), and the ``text`` column is
the clean text ``structured_content`` computes."""

from __future__ import annotations

from functools import cache

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.feeds.snapshots.structured_rows import (
    SCHEMA,
    StructuredColumns,
    flatten_parts,
    flatten_tables,
    iter_rows,
    parts_tree,
    record_parts,
    structured_text,
    tables_tree,
)
from feedserver.formats.hashing import ENCODER
from feedserver.ingest.dump import read_dump
from feedserver.ingest.structured import (
    Citation,
    Image,
    Part,
    PartLink,
    StructuredContent,
    Table,
    TableCell,
    structured_content,
)
from feedserver.models import Article
from tests.conftest import DUMPS

SAMPLE = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
DECODER = msgspec.json.Decoder(StructuredContent)
TYPES = ["section", "paragraph", "list", "list_item", "field", "image", "infobox", "table"]
TEXT = st.text(max_size=8)
MAYBE = st.none() | TEXT


def parts(depth: int) -> st.SearchStrategy[Part]:
    # Children lists are never empty: an empty has_parts comes back absent (documented).
    children = st.none() if depth == 0 else st.none() | st.lists(parts(depth - 1), min_size=1,
                                                                 max_size=3)
    return st.builds(
        Part, type=st.sampled_from(TYPES), name=MAYBE, value=MAYBE,
        values=st.none() | st.lists(TEXT, max_size=2), has_parts=children,
        images=st.none() | st.lists(st.builds(Image, content_url=MAYBE, width=st.none()
                                              | st.integers(0, 5000)), max_size=2),
        links=st.none() | st.lists(st.builds(PartLink, url=MAYBE, text=MAYBE), max_size=2),
        citations=st.none() | st.lists(st.builds(Citation, identifier=TEXT, group=MAYBE,
                                                 text=MAYBE), max_size=2))


def tables(depth: int) -> st.SearchStrategy[Table]:
    nested = st.none() if depth == 0 else st.none() | tables(depth - 1)
    cell = st.builds(TableCell, value=MAYBE, nested_table=nested)
    grid = st.none() | st.lists(st.lists(cell, max_size=3), max_size=3)
    return st.builds(Table, identifier=st.uuids().map(str), headers=grid, rows=grid,
                     footers=grid, confidence_score=st.none() | st.floats(0, 1))


def through_arrow(rows: list[dict[str, object]] | None, field: str) -> object:
    """The flattened value as a reader gets it back from Arrow (lists of dicts)."""
    column = pa.array([rows], type=SCHEMA.field(field).type)
    return column.to_pylist()[0]


@settings(max_examples=150, deadline=None)
@given(st.none() | st.lists(parts(3), max_size=4))
def test_any_tree_of_parts_comes_back(tree: list[Part] | None) -> None:
    flat = flatten_parts(tree)
    assert ENCODER.encode(parts_tree(through_arrow(flat, "sections"))) == ENCODER.encode(tree)
    for k, row in enumerate(flat or []):
        # the documented addressing: a parent comes before its children, one level up, and
        # the path is the parent's path plus the position among siblings
        parent = row["parent"]
        if parent is None:
            assert row["depth"] == 0 and "." not in row["path"]
        else:
            assert parent < k and flat[parent]["depth"] == row["depth"] - 1
            assert row["path"].rsplit(".", 1)[0] == flat[parent]["path"]


@settings(max_examples=100, deadline=None)
@given(st.none() | st.lists(tables(2), max_size=3), st.booleans())
def test_tables_with_nested_tables_come_back(found: list[Table] | None, listed: bool) -> None:
    # The parser lists nested tables in ``tables`` too (before their holders); a record that
    # does not still loses nothing (the unlisted ones are appended with listed = false).
    if listed and found:
        nested = [c.nested_table for t in found for grid in (t.headers, t.rows, t.footers)
                  for line in grid or () for c in line if c.nested_table is not None]
        found = [*nested, *found]
    back = tables_tree(through_arrow(flatten_tables(found), "tables"))
    assert ENCODER.encode(back) == ENCODER.encode(found)


@cache
def real_records() -> tuple[list[StructuredContent], list[str], list[bytes]]:
    info, records = read_dump(SAMPLE)
    contents, texts, lines = [], [], []
    for r in records:
        if isinstance(r, Article) and r.namespace.identifier == 0:
            result = structured_content(r, namespaces=info.namespaces)
            line = ENCODER.encode(result.content)
            contents.append(DECODER.decode(line))  # as a sealed chunk holds it
            texts.append(result.text)
            lines.append(line)
    return contents, texts, lines


def test_every_real_page_round_trips_through_a_parquet_file(tmp_path: object) -> None:
    contents, texts, lines = real_records()
    # The text column needs no parse: the sections give the very same clean text.
    assert [structured_text(c) for c in contents] == texts
    columns = StructuredColumns(0)
    for content, line, text in zip(contents, lines, texts, strict=True):
        columns.add(content, line, text)
    sink = pa.BufferOutputStream()
    pq.write_table(columns.table(), sink)
    table = pq.read_table(pa.BufferReader(sink.getvalue()))
    assert table.schema.names[:4] == ["id", "url", "title", "text"]
    rows = list(iter_rows(table))
    assert len(rows) == len(contents) > 1000
    kinds = {"infoboxes": 0, "tables": 0, "references": 0, "nested": 0}
    for content, row in zip(contents, rows, strict=True):
        want = StructuredContent(
            name=content.name, identifier=content.identifier, abstract=content.abstract,
            description=content.description, url=content.url, image=content.image,
            infoboxes=content.infoboxes, sections=content.sections,
            references=content.references, tables=content.tables)
        assert ENCODER.encode(record_parts(row)) == ENCODER.encode(want), content.name
        kinds["infoboxes"] += bool(content.infoboxes)
        kinds["tables"] += bool(content.tables)
        kinds["references"] += bool(content.references)
        kinds["nested"] += any(p["depth"] >= 2 for p in row["sections"] or ())
    # The real sample exercises every flattened structure, not just the easy ones.
    assert all(kinds.values()), kinds
