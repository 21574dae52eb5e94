"""`feedserver snapshot build|list|show|verify|export|load-state`: build and inspect snapshot
versions, hand one over offline (NDJSON or Parquet), and seed the on-demand state store.
``--structured`` reads the Structured Contents snapshots instead of the article ones.

``build`` seeds the state store itself once a version is published (``--no-load-state`` skips
it), so on-demand lookups find what was built with no further step; events newer than the
snapshot still win (``StateStore`` orders rows by revision, then time)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from feedserver.cli.command import bind
from feedserver.config import Settings
from feedserver.errors import InvalidParameter
from feedserver.feeds.scratch import scratch_dir
from feedserver.feeds.snapshots.build import build_dumps
from feedserver.feeds.snapshots.extras import parquet_options
from feedserver.feeds.snapshots.manifest import (
    MANIFEST_ENCODER,
    PREFIX,
    STRUCTURED_PREFIX,
    Manifest,
)
from feedserver.feeds.snapshots.parquet import convert_lines, copy_shard
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.feeds.snapshots.structured_parquet import write_structured
from feedserver.identifiers import check_snapshot_identifier
from feedserver.metrics import Metrics
from feedserver.storage.blobs import open_blob_store

_STRUCTURED_HELP = "the Structured Contents snapshots instead of the article ones"
METRICS_FILE_HELP = ("write the run's Prometheus metrics (Structured Contents parse outcome) "
                     "to FILE, in the node_exporter textfile-collector format")


def register(sub: Any) -> None:
    parser = sub.add_parser("snapshot", help="build and inspect snapshot versions")
    cmds = parser.add_subparsers(dest="snapshot_command", required=True, metavar="ACTION")

    build = cmds.add_parser("build", help="build a new version of each namespace in the dumps")
    build.add_argument("--dump", action="append", required=True, type=Path, metavar="PATH",
                       help="MediaWiki XML dump (.xml, .bz2, .gz); repeat for several files")
    build.add_argument("--wiki", help="project id (dbname) overriding the dump's")
    build.add_argument("--namespace", action="append", type=int, metavar="N",
                       help="keep only these namespaces (repeatable)")
    build.add_argument("--chunk-size", type=int, metavar="BYTES",
                       help="uncompressed bytes per chunk (default: settings.chunk_size)")
    build.add_argument("--workers", type=int, metavar="N",
                       help="parse dump files in N processes (default: settings.ingest_workers)")
    build.add_argument("--parquet", action=argparse.BooleanOptionalAction, default=None,
                       help="also publish Parquet shards (default: settings.parquet_enabled)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--no-load-state", action="store_true",
                       help="do not seed the on-demand state store from the new versions")
    build.add_argument("--no-structured", action="store_true",
                       help="no Structured Contents versions (default: one for each namespace "
                            "in settings.structured_namespaces)")
    build.add_argument("--metrics-file", type=Path, metavar="FILE", help=METRICS_FILE_HELP)
    bind(build, cmd_build)

    listing = cmds.add_parser("list", help="published snapshots and their current version")
    listing.add_argument("--structured", action="store_true", help=_STRUCTURED_HELP)
    bind(listing, cmd_list)

    for name, handler, text in (
        ("show", cmd_show, "print a version's manifest as JSON"),
        ("verify", cmd_verify, "re-hash a version's chunks and content root"),
        ("export", cmd_export, "write a version's records as NDJSON"),
        ("load-state", cmd_load_state,
         "seed the state store (on-demand lookups) from a version; newer event state wins"),
    ):
        cmd = cmds.add_parser(name, help=text)
        cmd.add_argument("identifier", help="snapshot identifier, e.g. enwiki_namespace_0")
        cmd.add_argument("--version", type=int, metavar="N", help="version (default: current)")
        if name != "load-state":
            cmd.add_argument("--structured", action="store_true", help=_STRUCTURED_HELP)
        if name == "export":
            cmd.add_argument("--format", choices=["ndjson", "parquet"], default="ndjson",
                             help="ndjson: one file of records; parquet: the version's shards "
                                  "and _manifest.json in a folder (converted from the records "
                                  "when the version was published without Parquet)")
            cmd.add_argument("-o", "--output", required=True, type=Path, metavar="PATH",
                             help="NDJSON file ('-' for stdout) or, with --format parquet, "
                                  "the folder to write")
        bind(cmd, handler)


def cmd_build(settings: Settings, *, dump: list[Path], wiki: str | None = None,
              namespace: list[int] | None = None, chunk_size: int | None = None,
              workers: int | None = None, parquet: bool | None = None,
              no_progress: bool = False, no_structured: bool = False,
              metrics_file: Path | None = None, no_load_state: bool = False) -> int:
    if parquet is not None:
        settings = msgspec.structs.replace(settings, parquet_enabled=parquet)
    if no_structured:
        settings = msgspec.structs.replace(settings, structured_namespaces=[])
    if chunk_size is not None:
        if chunk_size < 1:
            raise InvalidParameter("--chunk-size must be positive")
        settings = msgspec.structs.replace(settings, chunk_size=chunk_size)
    workers = workers if workers is not None else settings.ingest_workers
    if workers < 1:
        raise InvalidParameter("--workers must be at least 1")
    for path in dump:
        if not path.is_file():
            raise InvalidParameter(f"dump {str(path)!r} is not a file")
    metrics = Metrics()
    built = build_dumps(
        dump, open_blob_store(settings), settings, wiki=wiki,
        namespaces=set(namespace) if namespace else None,
        progress=not no_progress and sys.stderr.isatty(), workers=workers, metrics=metrics,
    )
    for m in built.articles:
        shards = f", {len(m.parquet.shards)} Parquet shards" if m.parquet is not None else ""
        print(f"{m.identifier} version {m.version}: {m.article_count} articles, "
              f"{m.redirect_count} redirects, {len(m.chunks)} chunks{shards}, "
              f"{int(m.size.value)} B")
    for m in built.structured:
        print(structured_summary(m))
    if not built.articles:
        print("no articles found: nothing published", file=sys.stderr)
    elif not no_load_state:
        for m in built.articles:
            _load_state(settings, m)
    write_metrics(metrics, metrics_file)
    return 0


def structured_summary(m: Manifest) -> str:
    """One line on a Structured Contents version: size and parse outcome."""
    info = m.structured
    problems = ", ".join(f"{k} {n}" for k, n in info.problems.items()) if info else ""
    outcome = (f"{info.parsed} parsed, {info.degraded} degraded"
               + (f" ({problems})" if problems else "")) if info else ""
    return (f"{m.identifier} structured contents version {m.version}: {m.article_count} "
            f"articles, {len(m.chunks)} chunks, {int(m.size.value)} B; {outcome}")


def write_metrics(metrics: Metrics, path: Path | None) -> None:
    """The registry in Prometheus' text format to ``path`` (written whole, then renamed)."""
    if path is not None:
        from prometheus_client import write_to_textfile

        write_to_textfile(str(path), metrics.registry)


def _store(settings: Settings, structured: bool) -> SnapshotStore:
    return SnapshotStore(open_blob_store(settings), STRUCTURED_PREFIX if structured else PREFIX)


def cmd_list(settings: Settings, *, structured: bool = False) -> int:
    store = _store(settings, structured)
    for identifier in store.identifiers():
        m = store.manifest(identifier)
        versions = ",".join(str(v) for v in store.versions(identifier))
        print(f"{identifier}\tversion {m.version}\t{m.article_count} articles\t"
              f"{int(m.size.value)} B\t{m.date_modified.isoformat()}\tversions {versions}")
    return 0


def cmd_show(settings: Settings, *, identifier: str, version: int | None = None,
             structured: bool = False) -> int:
    store = _store(settings, structured)
    manifest = store.manifest(check_snapshot_identifier(identifier), version)
    sys.stdout.buffer.write(msgspec.json.format(MANIFEST_ENCODER.encode(manifest)) + b"\n")
    return 0


def cmd_verify(settings: Settings, *, identifier: str, version: int | None = None,
               structured: bool = False) -> int:
    store = _store(settings, structured)
    manifest = store.manifest(check_snapshot_identifier(identifier), version)
    store.verify(manifest)
    shards = (f", {len(manifest.parquet.shards)} Parquet shards"
              if manifest.parquet is not None else "")
    print(f"{manifest.identifier} version {manifest.version}: OK "
          f"({manifest.article_count} articles, {len(manifest.chunks)} chunks{shards}, "
          f"root {manifest.content_root_hash})")
    return 0


def cmd_export(settings: Settings, *, identifier: str, output: Path,
               version: int | None = None, format: str = "ndjson",
               structured: bool = False) -> int:
    store = _store(settings, structured)
    manifest = store.manifest(check_snapshot_identifier(identifier), version)
    if format == "parquet":
        return _export_parquet(settings, store, manifest, output)
    if str(output) == "-":
        _write_lines(store, manifest, sys.stdout.buffer)
        return 0
    tmp = output.with_name(output.name + ".part")
    try:
        with tmp.open("wb") as out:
            count = _write_lines(store, manifest, out)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {count} records to {output}", file=sys.stderr)
    return 0


def cmd_load_state(settings: Settings, *, identifier: str, version: int | None = None) -> int:
    store = SnapshotStore(open_blob_store(settings))
    _load_state(settings, store.manifest(check_snapshot_identifier(identifier), version))
    return 0


def _load_state(settings: Settings, manifest: Manifest) -> None:
    """Seed the state store (on-demand lookups) from ``manifest``; newer state wins."""
    from feedserver.feeds.events.state import StateStore
    from feedserver.storage.db import connect

    store = SnapshotStore(open_blob_store(settings))
    db = connect(settings.database)
    try:
        count = StateStore(db).load_lines(store.iter_lines(manifest))
    finally:
        db.close()
    print(f"{manifest.identifier} version {manifest.version}: {count} articles loaded "
          "into the state store", file=sys.stderr)


def _write_lines(store: SnapshotStore, manifest: Any, out: Any) -> int:
    count = 0
    for line in store.iter_lines(manifest):
        out.write(line)
        out.write(b"\n")
        count += 1
    return count


def _export_parquet(settings: Settings, store: SnapshotStore, manifest: Manifest,
                    folder: Path) -> int:
    """The version's shards (checked while copied, or converted from its records) and its
    _manifest.json in ``folder``: what a lab needs to load and check it offline."""
    if str(folder) == "-" or (folder.exists() and not folder.is_dir()):
        raise InvalidParameter("--format parquet writes a folder: give -o DIR")
    folder.mkdir(parents=True, exist_ok=True)
    if manifest.parquet is not None:
        for shard in manifest.parquet.shards:
            copy_shard(store.blobs, shard, folder / shard.filename)
        how = "copied"
    else:
        names = {manifest.namespace.identifier: manifest.namespace.name or ""}
        with scratch_dir(settings.data_path, "parquet-export-") as tmp:
            if store.prefix == STRUCTURED_PREFIX:  # the records hold their texts' sections
                built = write_structured(
                    store.iter_lines(manifest), identifier=manifest.identifier,
                    namespace=manifest.namespace.identifier, folder=Path(tmp),
                    options=parquet_options(settings), namespaces=names)
            else:
                built = convert_lines(store.iter_lines(manifest),
                                      identifier=manifest.identifier, folder=Path(tmp),
                                      options=parquet_options(settings), namespaces=names)
            for _, path in built.files():
                path.replace(folder / path.name)
            manifest = built.record(manifest)
        how = "converted from the records (the version was published without Parquet)"
    # "_" first: dataset readers (pyarrow.dataset, Spark) skip it when given the folder.
    (folder / "_manifest.json").write_bytes(
        msgspec.json.format(MANIFEST_ENCODER.encode(manifest)) + b"\n")
    assert manifest.parquet is not None
    print(f"{manifest.identifier} version {manifest.version}: {len(manifest.parquet.shards)} "
          f"Parquet shards, {manifest.parquet.rows} rows, {how}, in {folder}", file=sys.stderr)
    return 0
