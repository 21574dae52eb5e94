"""The package imports follow the architecture: no arrow runs back up.

    models config errors identifiers plans metrics logs
                                                records, settings, errors, ids, plans, logging
      <- ingest formats storage sources demo    pure transforms, file formats, adapters
        <- feeds accounts metering              the feeds and the business
          <- api cli                            the edges

Inside ``feeds`` and ``storage`` the subpackages form a small graph of their own (below).
Read from the source with ``ast`` (every ``import`` and ``from ... import``, function-level
ones included), so a new module is checked the day it is written. Vendor clients stay inside
their adapters: aiokafka only in the Kafka event log, boto3/botocore only in the S3 blob
store, psycopg only in the PostgreSQL database.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "feedserver"

# What each part may import from feedserver (besides itself). A part is a top-level module
# or package of feedserver; the bottom modules form one part, "base".
BASE = frozenset({"models", "config", "errors", "plans", "metrics", "identifiers", "logs"})
ALLOWED: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "ingest": frozenset({"base"}),
    "formats": frozenset({"base"}),
    "storage": frozenset({"base"}),
    "sources": frozenset({"base", "ingest", "storage"}),
    "demo": frozenset({"base"}),
    "feeds": frozenset({"base", "ingest", "formats", "storage", "sources"}),
    "accounts": frozenset({"base", "storage"}),
    "metering": frozenset({"base", "storage", "accounts"}),
    "api": frozenset({"base", "ingest", "formats", "storage", "feeds", "accounts", "metering"}),
    "cli": frozenset({"base", "ingest", "formats", "storage", "sources", "demo", "feeds",
                      "accounts", "metering", "api"}),
    # The tools beside the package: the CLI entry point and the schema exporter.
    "__main__": frozenset({"cli"}),
    "schemas": frozenset({"base"}),
    "__init__": frozenset(),
}
# Inside a part: which subpackage (or top module) may import which other ones.
INNER: dict[str, dict[str, frozenset[str]]] = {
    "feeds": {
        "scratch": frozenset(), "realtime": frozenset(),
        "snapshots": frozenset({"scratch"}),
        "events": frozenset(),
        "batches": frozenset({"snapshots"}),
        "diffs": frozenset({"snapshots", "events", "scratch"}),
    },
    "storage": {
        "blobs": frozenset(), "db": frozenset(), "eventlog": frozenset({"db"}),
    },
}
# Third-party clients of outside systems, and the one module each may be imported from.
VENDORS: dict[str, str] = {
    "aiokafka": "storage/eventlog/kafka.py",
    "boto3": "storage/blobs/s3.py",
    "botocore": "storage/blobs/s3.py",
    "mypy_boto3_s3": "storage/blobs/s3.py",
    "psycopg": "storage/db/postgres.py",
    "psycopg_pool": "storage/db/postgres.py",
}


def part_of(module: str) -> str:
    """``feedserver.feeds.snapshots.build`` -> ``feeds``; bottom modules -> ``base``."""
    top = module.split(".")[1] if module.count(".") else "__init__"
    return "base" if top in BASE else top


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
        yield ".".join(parts), path


def imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """Absolute names imported by the file (relative imports resolved)."""
    yield from _imports(path, module)


@functools.cache  # every test reads the same files: parse each once
def _imports(path: Path, module: str) -> tuple[tuple[str, int], ...]:
    return tuple(_scan(path, module))


def _scan(path: Path, module: str) -> Iterator[tuple[str, int]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:  # ``from feedserver.api import auth`` names a module
                yield f"{base}.{alias.name}", node.lineno


def test_no_import_runs_up() -> None:
    wrong = []
    for module, path in modules():
        part = part_of(module)
        allowed = ALLOWED[part] | {part}
        for name, line in imports(path, module):
            if not name.startswith("feedserver.") or name == "feedserver.__version__":
                continue
            target = part_of(name)
            if target not in allowed and target in ALLOWED:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} {module} -> {name}")
    assert wrong == []


def _inner(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 else None


@pytest.mark.parametrize("part", sorted(INNER))
def test_no_import_runs_up_inside(part: str) -> None:
    rules = INNER[part]
    wrong = []
    for module, path in modules():
        source = _inner(module) if part_of(module) == part else None
        if source is None:
            continue
        allowed = rules[source] | {source}
        for name, line in imports(path, module):
            target = _inner(name) if name.startswith(f"feedserver.{part}.") else None
            if target is not None and target not in allowed and target in rules:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} -> {name}")
    assert sorted({_inner(m) for m, _ in modules() if part_of(m) == part} - {None}) \
        == sorted(rules), f"add a rule for every {part} subpackage"
    assert wrong == []


def test_every_part_has_a_rule() -> None:
    parts = {part_of(module) for module, _ in modules()}
    assert parts <= set(ALLOWED), f"add a layering rule for {sorted(parts - set(ALLOWED))}"


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_vendor_clients_stay_in_their_adapter(vendor: str) -> None:
    found = sorted({str(path.relative_to(PACKAGE)) for module, path in modules()
                    for name, _ in imports(path, module)
                    if name == vendor or name.startswith(vendor + ".")})
    assert found in ([], [VENDORS[vendor]])


def test_the_rules_see_imports() -> None:
    # The checks above would pass vacuously if the parser saw nothing: it sees the known
    # ones, including function-level imports.
    seen = {name for module, path in modules() for name, _ in imports(path, module)}
    assert {"aiokafka", "boto3", "psycopg", "feedserver.storage.eventlog.kafka"} <= seen


def test_no_import_cycles_between_modules() -> None:
    # Within a part, modules may import each other; but never in a circle (TYPE_CHECKING
    # imports included: a type-only cycle still ties two modules into one). The portal's
    # context and api/services once formed one; the protocols now sit below both.
    known = {m for m, _ in modules()}
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        names = {name for name, _ in imports(path, module)}
        # ``from pkg import submodule`` depends on the submodule, not on pkg/__init__
        # (``imports`` yields both names; keep the package only when nothing under it is named).
        graph[module] = {name for name in names if name in known and name != module
                         and not any(other.startswith(name + ".") for other in names)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []
