"""Parquet schemas of articles and diffs, and the conversion of records to columns (pure).

Article columns: ``id, url, title, text`` first, typed exactly as the Hugging Face
``wikimedia/wikipedia`` dataset (four ``string`` features; ``id`` is the page id as a decimal
string there), then ``revision_id, date_modified, namespace, wiki, wikitext, abstract,
categories, templates, redirects, license`` as typed columns and lists of structs, never JSON
strings; last ``article_sha256``, the SHA-256 of the record's NDJSON line: the per-article hash
behind the manifest's ``content_root_hash``, so a Parquet version can be proved equal to the
NDJSON one. The key of a row is ``(wiki, namespace, id)``: the ``ArticleKey`` (project,
namespace, identifier) of the NDJSON feeds. Diff shards hold the same columns plus ``op``
(``add | update | delete``) first and ``previous_revision_id`` last; a delete row carries only
its key, ``title`` and ``previous_revision_id``. Delete rows come first, as in NDJSON diffs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa

from feedserver.formats.hashing import ENCODER, article_hash
from feedserver.models import Article, DiffDelete, DiffEntry, DiffUpdate, Link

Kind = Literal["articles", "diff"]
# Clean (plain) text of an article; the real one comes from the structured-contents work.
CleanText = Callable[[Article], str]

LINK = pa.struct([pa.field("name", pa.string(), nullable=False), pa.field("url", pa.string())])
LICENSE = pa.struct([pa.field("identifier", pa.string(), nullable=False),
                     pa.field("name", pa.string()), pa.field("url", pa.string())])

# The Hugging Face ``wikimedia/wikipedia`` features: {id, url, title, text}, all Value("string").
HF_FEATURES: dict[str, str] = {"id": "string", "url": "string", "title": "string",
                               "text": "string"}
KEY = ("wiki", "namespace", "id")


def _fields(*, diff: bool) -> list[pa.Field]:
    # In a diff, a delete row has no text or body: only the key columns stay non-null.
    required = not diff
    return [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("title", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=not required),
        pa.field("revision_id", pa.int64()),
        pa.field("date_modified", pa.timestamp("us", tz="UTC")),
        pa.field("namespace", pa.int32(), nullable=False),
        pa.field("wiki", pa.string(), nullable=False),
        pa.field("wikitext", pa.string()),
        pa.field("abstract", pa.string()),
        pa.field("categories", pa.list_(LINK)),
        pa.field("templates", pa.list_(LINK)),
        pa.field("redirects", pa.list_(LINK)),
        pa.field("license", pa.list_(LICENSE)),
        pa.field("article_sha256", pa.string(), nullable=not required),
    ]


_META = {b"feedserver.format": b"articles/1"}
ARTICLE_SCHEMA = pa.schema(_fields(diff=False), metadata=_META)
DIFF_SCHEMA = pa.schema(
    [pa.field("op", pa.string(), nullable=False), *_fields(diff=True),
     pa.field("previous_revision_id", pa.int64())],
    metadata={b"feedserver.format": b"diff/1"})
# Small, repetitive columns: dictionary-encoded and with statistics (so readers can prune
# row groups by id, revision, date or op); text columns get neither (min/max of article bodies
# would only bloat the footer).
DICTIONARY_COLUMNS = ["op", "wiki", "namespace"]
STATISTICS_COLUMNS = ["op", "id", "revision_id", "date_modified", "namespace", "wiki"]


def schema_of(kind: Kind) -> pa.Schema:
    return DIFF_SCHEMA if kind == "diff" else ARTICLE_SCHEMA


def wikitext_text(article: Article) -> str:
    """Placeholder clean text: the wikitext as it is (until a real cleaner is passed in)."""
    body = article.article_body
    return (body.wikitext or "") if body is not None else ""


def _links(links: list[Link] | None) -> list[dict[str, str | None]] | None:
    if links is None:
        return None
    return [{"name": link.name, "url": link.url} for link in links]


class Columns:
    """Rows accumulated column by column until they become one row group (``table``)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.schema = schema_of(kind)
        self.data: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.rows = 0
        self.weight = 0  # characters of the string columns: the row group's size estimate

    def add_article(self, article: Article, text: str, *, line: bytes | None = None,
                    op: str | None = None, previous_revision: int | None = None) -> None:
        """One article; ``line`` is its stored NDJSON line (re-encoded when not given)."""
        body = article.article_body
        wikitext = body.wikitext if body is not None else None
        d = self.data
        if self.kind == "diff":
            d["op"].append(op)
            d["previous_revision_id"].append(previous_revision)
        d["id"].append(str(article.identifier))
        d["url"].append(article.url)
        d["title"].append(article.name)
        d["text"].append(text)
        d["revision_id"].append(article.version.identifier if article.version else None)
        d["date_modified"].append(article.date_modified)
        d["namespace"].append(article.namespace.identifier)
        d["wiki"].append(article.is_part_of.identifier)
        d["wikitext"].append(wikitext)
        d["abstract"].append(article.abstract)
        d["categories"].append(_links(article.categories))
        d["templates"].append(_links(article.templates))
        d["redirects"].append(_links(article.redirects))
        d["license"].append(None if article.license is None else [
            {"identifier": lic.identifier, "name": lic.name, "url": lic.url}
            for lic in article.license])
        d["article_sha256"].append(article_hash(ENCODER.encode(article) if line is None else line))
        self.rows += 1
        self.weight += (len(text) + len(wikitext or "") + len(article.abstract or "")
                        + len(article.name) + len(article.url or "") + 64
                        + 48 * (len(article.categories or ()) + len(article.templates or ())
                                + len(article.redirects or ())))

    def add_entry(self, entry: DiffEntry, clean_text: CleanText, *,
                  line: bytes | None = None) -> None:
        """One diff entry (``kind == "diff"``); ``line``: its article's NDJSON line."""
        if isinstance(entry, DiffDelete):
            d = self.data
            for name in self.schema.names:
                d[name].append(None)
            d["op"][-1] = "delete"
            d["id"][-1] = str(entry.key.identifier)
            d["title"][-1] = entry.name
            d["namespace"][-1] = entry.key.namespace
            d["wiki"][-1] = entry.key.project
            d["previous_revision_id"][-1] = entry.previous_revision
            self.rows += 1
            self.weight += len(entry.name) + 64
            return
        if isinstance(entry, DiffUpdate):
            op, previous = "update", entry.previous_revision
        else:
            op, previous = "add", None
        self.add_article(entry.article, clean_text(entry.article), line=line, op=op,
                         previous_revision=previous)

    def table(self) -> pa.Table:
        """The accumulated rows as one table (then cleared)."""
        arrays = [pa.array(self.data[f.name], type=f.type) for f in self.schema]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        for values in self.data.values():
            values.clear()
        self.rows = self.weight = 0
        return table
