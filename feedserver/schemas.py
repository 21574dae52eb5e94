"""JSON Schemas of the wire records, generated from the msgspec structs into ``schemas/``.

``python -m feedserver.schemas`` rewrites ``schemas/<name>.json`` (one file per top-level record);
``--check`` writes nothing and exits 1 listing the files that drifted from the structs, so CI
catches a record change that was not exported. Output is deterministic: sorted keys, 2-space
indent, trailing newline.

To export a new record, append one ``(name, type)`` entry to ``RECORDS``. The type may be given
as ``"module:Qualname"`` so this module need not import every feed (and to include records of
modules still being written: an entry whose module does not exist yet is skipped until it does).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from feedserver.models import Article, Redirect

RECORDS: tuple[tuple[str, type | str], ...] = (
    ("article", Article),
    ("redirect", Redirect),
    ("manifest", "feedserver.feeds.snapshots.manifest:Manifest"),
    ("diff_manifest", "feedserver.feeds.diffs.manifest:DiffManifest"),
    ("batch_manifest", "feedserver.feeds.batches.store:HourIndex"),
    ("structured_content", "feedserver.ingest.structured.records:StructuredContent"),
)

# Documents that are not records: (name, "module:function" returning a JSON object). The
# OpenAPI description of the HTTP API is generated from the litestar app.
DOCUMENTS: tuple[tuple[str, str], ...] = (
    ("openapi", "feedserver.api.app:openapi_document"),
)

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _resolve(ref: type | str) -> type | None:
    if not isinstance(ref, str):
        return ref
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:  # not written yet; any other missing import is a real bug
            return None
        raise
    resolved = getattr(module, attr)
    if not isinstance(resolved, type):
        raise TypeError(f"{ref} is not a type")
    return resolved


def records() -> list[tuple[str, type]]:
    """The registry with lazy entries imported; entries whose module is absent are left out."""
    out = []
    for name, ref in RECORDS:
        resolved = _resolve(ref)
        if resolved is not None:
            out.append((name, resolved))
    return out


def normalise(node: Any) -> Any:
    """``node`` with every ``description`` cleaned like ``inspect.cleandoc``.

    Descriptions come from docstrings, whose indentation depends on the Python version (3.13
    strips it at compile time) and on the library that reads them; cleaned, the generated
    files are byte-identical on every supported Python.
    """
    if isinstance(node, dict):
        return {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str)
                else normalise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [normalise(v) for v in node]
    return node


def _dumps(document: Any) -> str:
    return json.dumps(normalise(document), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_of(record: type) -> dict[str, Any]:
    """A standalone JSON Schema document: a ``$ref`` to the record plus every definition."""
    (root,), components = msgspec.json.schema_components([record], ref_template="#/$defs/{name}")
    return {"$schema": DIALECT, **root, "$defs": components}


def render(record: type) -> str:
    return _dumps(schema_of(record))


def _document(ref: str) -> str:
    module_name, _, attr = ref.partition(":")
    return _dumps(getattr(importlib.import_module(module_name), attr)())


def expected_files() -> dict[str, str]:
    files = {f"{name}.json": render(record) for name, record in records()}
    files.update({f"{name}.json": _document(ref) for name, ref in DOCUMENTS})
    return files


def drifted(directory: Path) -> list[str]:
    """File names that differ from the structs: changed, missing, or no longer exported."""
    want = expected_files()
    have = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    out = []
    for name in sorted(want.keys() | have):
        path = directory / name
        if name not in want or name not in have or path.read_text("utf-8") != want[name]:
            out.append(name)
    return out


def write(directory: Path) -> list[str]:
    """Bring ``directory`` in step with the structs; returns the names written or removed."""
    directory.mkdir(parents=True, exist_ok=True)
    want = expected_files()
    changed = drifted(directory)
    for name in changed:
        path = directory / name
        if name in want:
            path.write_text(want[name], "utf-8")
        else:
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feedserver.schemas", description="Export JSON Schemas of wire records."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if schemas/ has drifted")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="schema directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted(args.dir)
        for name in stale:
            print(f"schema drifted: {args.dir / name}", file=sys.stderr)
        if stale:
            print("run: python -m feedserver.schemas", file=sys.stderr)
        return 1 if stale else 0
    for name in write(args.dir):
        print(f"updated {args.dir / name}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
