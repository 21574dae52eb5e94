"""Parquet rows of Structured Contents (schema ``structured/1``) and the way back (pure).

Columns: ``id, url, title, text`` first, the Hugging Face ``wikimedia/wikipedia`` features
(``id`` is the page id as a decimal string, ``title`` the record's ``name``, ``text`` the clean
text: ``plain_text(sections)``, exactly what ``structured_content(article).text`` is), then
``abstract, description, revision_id, date_modified, namespace, wiki, image, infoboxes,
sections, references, tables, license`` as typed columns and lists of structs, and last
``record_sha256``: the SHA-256 of the record's NDJSON line, whose sorted hashes give the
manifest's ``content_root_hash`` (``snapshot verify`` checks it).

Parquet cannot hold a recursive type, so the two trees are flattened:

* ``sections`` and ``infoboxes`` (trees of ``Part`` through ``has_parts``) become a list of
  parts in pre-order (a part, then its children, depth first). Each part carries ``parent``
  (the list index of its parent; null at the top), ``depth`` (0 at the top) and ``path`` (its
  position among its siblings at each level, dotted: ``"2.0.1"`` is the second child of the
  first child of the third top-level part). Rebuild: walk the list in order and append each
  part to its ``parent``'s ``has_parts`` (or to the top level) — ``parts_tree``.
* a table cell's ``nested_table`` is the ``identifier`` of a table in ``tables`` (the parser
  lists nested tables there too, before the tables holding them); a nested table that is not
  listed is appended with ``listed = false`` so that nothing is lost — ``tables_tree``.

Empty ``has_parts`` lists come back absent (a part with no children has no ``has_parts``);
every other list keeps the difference between absent (null) and empty. The columns are a
projection of the record (``event``, ``visibility``, ``attribution``… stay in the NDJSON); the
row hash ties each row to its full record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import pyarrow as pa

from feedserver.formats.hashing import ENCODER, article_hash
from feedserver.formats.parquet_rows import LICENSE
from feedserver.ingest.structured.blocks import plain_text
from feedserver.ingest.structured.records import (
    Citation,
    Image,
    Part,
    PartLink,
    Reference,
    ReferenceText,
    StructuredContent,
    Table,
    TableCell,
    TableReference,
)

FORMAT = "structured/1"
HASH_COLUMN = "record_sha256"

IMAGE = pa.struct([pa.field("content_url", pa.string()), pa.field("width", pa.int64()),
                   pa.field("height", pa.int64()), pa.field("alternative_text", pa.string()),
                   pa.field("caption", pa.string())])
PART_LINK = pa.struct([pa.field("url", pa.string()), pa.field("text", pa.string()),
                       pa.field("images", pa.list_(IMAGE))])
CITATION = pa.struct([pa.field("identifier", pa.string(), nullable=False),
                      pa.field("group", pa.string()), pa.field("text", pa.string())])
TABLE_REFERENCE = pa.struct([pa.field("identifier", pa.string(), nullable=False),
                             pa.field("confidence_score", pa.float64())])
PART = pa.struct([
    pa.field("parent", pa.int32()),  # list index of the parent part; null at the top level
    pa.field("depth", pa.int32(), nullable=False),
    pa.field("path", pa.string(), nullable=False),  # sibling positions, dotted: "2.0.1"
    pa.field("type", pa.string(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("value", pa.string()),
    pa.field("values", pa.list_(pa.string())),
    pa.field("images", pa.list_(IMAGE)),
    pa.field("links", pa.list_(PART_LINK)),
    pa.field("citations", pa.list_(CITATION)),
    pa.field("table_references", pa.list_(TABLE_REFERENCE)),
])
REFERENCE_TEXT = pa.struct([pa.field("value", pa.string()),
                            pa.field("links", pa.list_(PART_LINK))])
REFERENCE = pa.struct([
    pa.field("identifier", pa.string(), nullable=False), pa.field("group", pa.string()),
    pa.field("type", pa.string()), pa.field("metadata", pa.map_(pa.string(), pa.string())),
    pa.field("text", REFERENCE_TEXT), pa.field("source", REFERENCE_TEXT),
    pa.field("parent_reference", pa.string()),
])
# A cell's nested table is the identifier of another entry of ``tables``.
CELL = pa.struct([pa.field("value", pa.string()), pa.field("nested_table", pa.string())])
ROWS = pa.list_(pa.list_(CELL))
TABLE = pa.struct([
    pa.field("identifier", pa.string(), nullable=False), pa.field("headers", ROWS),
    pa.field("rows", ROWS), pa.field("footers", ROWS),
    pa.field("confidence_score", pa.float64()),
    pa.field("listed", pa.bool_(), nullable=False),  # in the record's ``tables`` (not nested only)
])

SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("title", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("abstract", pa.string()),
    pa.field("description", pa.string()),
    pa.field("revision_id", pa.int64()),
    pa.field("date_modified", pa.timestamp("us", tz="UTC")),
    pa.field("namespace", pa.int32(), nullable=False),
    pa.field("wiki", pa.string()),
    pa.field("image", IMAGE),
    pa.field("infoboxes", pa.list_(PART)),
    pa.field("sections", pa.list_(PART)),
    pa.field("references", pa.list_(REFERENCE)),
    pa.field("tables", pa.list_(TABLE)),
    pa.field("license", pa.list_(LICENSE)),
    pa.field(HASH_COLUMN, pa.string(), nullable=False),
], metadata={b"feedserver.format": FORMAT.encode()})

Row = dict[str, Any]


def structured_text(content: StructuredContent) -> str:
    """The ``text`` column: the clean text of the record's sections (``plain_text``, the very
    function ``structured_content`` computes its ``text`` with)."""
    return plain_text(content.sections or [])


# --- to rows -----------------------------------------------------------------------------------
# Records become plain dicts in one C call (``msgspec.to_builtins``: absent fields are left
# out, which Arrow reads as null); the flattening then only moves dicts around.

def _plain(value: object) -> Any:
    return msgspec.to_builtins(value)


def flatten_parts(parts: list[Part] | None) -> list[Row] | None:
    """A tree of parts as a list in pre-order, each with ``parent``, ``depth`` and ``path``."""
    if parts is None:
        return None
    out: list[Row] = []

    def visit(node: Row, parent: int | None, depth: int, path: str) -> None:
        children = node.pop("has_parts", None)
        node["parent"], node["depth"], node["path"] = parent, depth, path
        out.append(node)
        index = len(out) - 1
        for k, child in enumerate(children or ()):
            visit(child, index, depth + 1, f"{path}.{k}")

    for k, node in enumerate(_plain(parts)):
        visit(node, None, 0, str(k))
    return out


def flatten_tables(tables: list[Table] | None) -> list[Row] | None:
    """The record's tables, nested tables named by identifier (unlisted ones appended)."""
    if tables is None:
        return None
    listed: list[Row] = _plain(tables)
    known = {t["identifier"] for t in listed}
    out: list[Row] = []

    def add(table: Row, *, is_listed: bool) -> None:
        table["listed"] = is_listed
        out.append(table)
        for grid in ("headers", "rows", "footers"):
            for line in table.get(grid) or ():
                for cell in line:
                    nested = cell.get("nested_table")
                    if nested is None:
                        continue
                    cell["nested_table"] = nested["identifier"]
                    if nested["identifier"] not in known:
                        known.add(nested["identifier"])
                        add(nested, is_listed=False)

    for table in listed:
        add(table, is_listed=True)
    return out


def to_row(content: StructuredContent, text: str, line: bytes | None, *,
           namespace: int) -> Row:
    """One record's row (``line``: its stored NDJSON line, re-encoded when not given)."""
    return {
        "id": str(content.identifier), "url": content.url, "title": content.name,
        "text": text, "abstract": content.abstract, "description": content.description,
        "revision_id": content.version.identifier if content.version else None,
        "date_modified": content.date_modified, "namespace": namespace,
        "wiki": content.is_part_of.identifier if content.is_part_of else None,
        "image": _plain(content.image), "infoboxes": flatten_parts(content.infoboxes),
        "sections": flatten_parts(content.sections),
        "references": _plain(content.references),
        "tables": flatten_tables(content.tables),
        "license": _plain(content.license),
        HASH_COLUMN: article_hash(ENCODER.encode(content) if line is None else line),
    }


class StructuredColumns:
    """Structured Contents rows gathered column by column (a ``formats.parquet.RowBuffer``)."""

    def __init__(self, namespace: int) -> None:
        self.namespace = namespace
        self.schema = SCHEMA
        self.data: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        self.rows = 0
        self.weight = 0

    def add(self, content: StructuredContent, line: bytes, text: str) -> None:
        row = to_row(content, text, line, namespace=self.namespace)
        for name, values in self.data.items():
            values.append(row[name])
        self.rows += 1
        # The record's JSON is close to what its columns hold; the text comes on top.
        self.weight += len(line) + len(text)

    def table(self) -> pa.Table:
        arrays = [pa.array(self.data[f.name], type=f.type) for f in SCHEMA]
        table = pa.Table.from_arrays(arrays, schema=SCHEMA)
        for values in self.data.values():
            values.clear()
        self.rows = self.weight = 0
        return table


# --- back to records ---------------------------------------------------------------------------

def _image_of(row: Row | None) -> Image | None:
    return None if row is None else Image(**row)


def _images_of(rows: list[Row] | None) -> list[Image] | None:
    return None if rows is None else [Image(**r) for r in rows]


def _links_of(rows: list[Row] | None) -> list[PartLink] | None:
    return None if rows is None else [
        PartLink(url=r["url"], text=r["text"], images=_images_of(r["images"])) for r in rows]


def parts_tree(rows: Iterable[Row] | None) -> list[Part] | None:
    """The tree ``flatten_parts`` flattened: each part appended to its ``parent``'s
    ``has_parts`` (parents come first in pre-order)."""
    if rows is None:
        return None
    made: list[Part] = []
    top: list[Part] = []
    for r in rows:
        part = Part(
            type=r["type"], name=r["name"], value=r["value"], values=r["values"],
            images=_images_of(r["images"]), links=_links_of(r["links"]),
            citations=None if r["citations"] is None else [
                Citation(**c) for c in r["citations"]],
            table_references=None if r["table_references"] is None else [
                TableReference(**t) for t in r["table_references"]])
        made.append(part)
        parent = r["parent"]
        if parent is None:
            top.append(part)
        else:
            owner = made[parent]
            if owner.has_parts is None:
                owner.has_parts = []
            owner.has_parts.append(part)
    return top


def tables_tree(rows: Iterable[Row] | None) -> list[Table] | None:
    """The record's ``tables`` back, nested tables put back into their cells."""
    if rows is None:
        return None
    listed = list(rows)
    by_id: dict[str, Table] = {}
    pending: dict[str, Row] = {r["identifier"]: r for r in listed}

    def table(ident: str) -> Table:
        found = by_id.get(ident)
        if found is None:
            r = pending[ident]
            found = by_id[ident] = Table(
                identifier=ident, headers=grid(r["headers"]), rows=grid(r["rows"]),
                footers=grid(r["footers"]), confidence_score=r["confidence_score"])
        return found

    def grid(lines: list[list[Row]] | None) -> list[list[TableCell]] | None:
        if lines is None:
            return None
        return [[TableCell(value=c["value"], nested_table=None if c["nested_table"] is None
                           else table(c["nested_table"])) for c in line] for line in lines]

    return [table(r["identifier"]) for r in listed if r["listed"]]


def _references_of(rows: list[Row] | None) -> list[Reference] | None:
    def text(r: Row | None) -> ReferenceText | None:
        return None if r is None else ReferenceText(value=r["value"], links=_links_of(r["links"]))

    return None if rows is None else [Reference(
        identifier=r["identifier"], group=r["group"], type=r["type"],
        metadata=None if r["metadata"] is None else dict(r["metadata"]),
        text=text(r["text"]), source=text(r["source"]),
        parent_reference=r["parent_reference"]) for r in rows]


def record_parts(row: Row) -> StructuredContent:
    """A row's record as far as the columns hold it: name, identifier, the trees, references,
    tables, image, description, abstract (what the flattening must give back exactly)."""
    return StructuredContent(
        name=row["title"], identifier=int(row["id"]), abstract=row["abstract"],
        description=row["description"], url=row["url"], image=_image_of(row["image"]),
        infoboxes=parts_tree(row["infoboxes"]), sections=parts_tree(row["sections"]),
        references=_references_of(row["references"]), tables=tables_tree(row["tables"]))


def iter_rows(table: pa.Table) -> Iterator[Row]:
    """Rows of a table read back (maps come back as lists of pairs, as pyarrow gives them)."""
    yield from table.to_pylist()
