"""Golden structure of eight real pages (infobox, nested lists, tables, named refs, Greek).

The golden files hold the structure only, never the pages' prose: the section tree with the
kinds and numbers of parts, links and citations in each section, infobox field names, table
shapes, reference identifiers and types, and short hashes of the values, so any change in
what the parser extracts shows up as a reviewable diff. They were checked by hand against the
pages' wikitext. Regenerate after an intended change with
``python -m tests.unit.ingest.structured.test_golden`` and review the diff.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from feedserver.ingest.structured import Part, StructuredResult, Table, structured_content
from tests.conftest import DUMPS
from tests.unit.ingest.structured.pages import ENWIKI, GREEK, TABLE_MARKUP, find

GOLDEN = Path(__file__).parent / "golden"
PEAR = DUMPS / "pywikibot" / "article-pear-0.10.xml"
# golden file -> (dump, page): what each one is here for
CASES = {
    "enwiki-alabama": (ENWIKI, "Alabama"),  # infobox, tables, named refs
    "enwiki-afroasiatic-languages": (ENWIKI, "Afroasiatic languages"),  # nested lists
    "enwiki-anarchism": (ENWIKI, "Anarchism"),  # many named and reused refs
    "enwiki-economy-of-estonia": (TABLE_MARKUP, "Economy of Estonia"),  # tables
    "enwiki-brahui-language": (TABLE_MARKUP, "Brahui language"),  # infobox + tables
    "enwiki-pear": (PEAR, "Pear"),  # taxobox, gallery, cite templates
    "elwikivoyage-antarctica": (GREEK, "Ανταρκτική"),  # Quickbar infobox, lists, Greek
    "elwikivoyage-english-phrasebook": (GREEK, "Αγγλικός γλωσσικός οδηγός"),  # Greek tables
}


def _hash(*values: str | None) -> str:
    joined = "\n".join(v or "" for v in values)
    return hashlib.sha256(joined.encode()).hexdigest()[:10]


def _walk(parts: list[Part] | None) -> list[Part]:
    out: list[Part] = []
    for part in parts or ():
        out.append(part)
        out += _walk(part.has_parts)
    return out


def _section(part: Part) -> dict[str, Any]:
    """A section: its own blocks summarised, its subsections in full."""
    blocks = [p for p in part.has_parts or () if p.type != "section"]
    inner = [p for b in blocks for p in _walk([b])]
    kinds = Counter(p.type for p in inner)
    summary: dict[str, Any] = {"name": part.name}
    if kinds:
        summary["parts"] = dict(sorted(kinds.items()))
        summary["links"] = sum(len(p.links or ()) for p in inner)
        summary["citations"] = sum(len(p.citations or ()) for p in inner)
        summary["images"] = sum(len(p.images or ()) for p in inner)
        summary["values"] = _hash(*(p.value for p in inner))
    subsections = [_section(p) for p in part.has_parts or () if p.type == "section"]
    if subsections:
        summary["sections"] = subsections
    return summary


def _table(table: Table) -> dict[str, Any]:
    def shape(rows: list[list[Any]] | None) -> list[int]:
        return [len(row) for row in rows or ()]

    cells = [c for rows in (table.headers, table.rows, table.footers) for row in rows or ()
             for c in row]
    return {"identifier": table.identifier, "headers": shape(table.headers),
            "rows": shape(table.rows), "footers": shape(table.footers),
            "nested": sum(1 for c in cells if c.nested_table is not None),
            "confidence_score": table.confidence_score,
            "values": _hash(*(c.value for c in cells))}


def summary(result: StructuredResult) -> dict[str, Any]:
    content = result.content
    references = content.references or []
    return {
        "name": content.name,
        "problems": result.problems,
        "description": _hash(content.description) if content.description else None,
        "image": content.image.content_url if content.image else None,
        "infoboxes": [{"name": box.name,
                       "fields": [f"{p.type}:{p.name}" for p in _walk(box.has_parts)
                                  if p.type in ("field", "image")],
                       "values": _hash(*(p.value for p in _walk(box.has_parts)))}
                      for box in content.infoboxes or ()],
        "sections": [_section(p) for p in content.sections or ()],
        "references": {"count": len(references),
                       "identifiers": [r.identifier for r in references],
                       "types": dict(sorted(Counter(r.type or "" for r in references).items())),
                       "with_metadata": sum(1 for r in references if r.metadata),
                       "nested": sum(1 for r in references if r.parent_reference),
                       "texts": _hash(*(r.text.value if r.text else None for r in references))},
        "tables": [_table(t) for t in content.tables or ()],
        "text": {"chars": len(result.text), "hash": _hash(result.text)},
    }


def _result(case: str) -> StructuredResult:
    path, name = CASES[case]
    page = find(path, name)
    return structured_content(page.article, namespaces=page.namespaces)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_structure(case: str) -> None:
    golden = GOLDEN / f"{case}.json"
    assert golden.is_file(), f"missing {golden.name}: run python -m {__name__}"
    assert summary(_result(case)) == json.loads(golden.read_text())


def _dumps(value: Any, indent: str = "") -> str:
    """JSON with one line per key and lists of plain values on one line: short, diffable."""
    if isinstance(value, dict) and value:
        inner = indent + " "
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        inner = indent + " "
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for case in sorted(CASES):
        text = _dumps(summary(_result(case)))
        (GOLDEN / f"{case}.json").write_text(text + "\n")
        print(f"wrote {case}.json")


if __name__ == "__main__":
    main()
