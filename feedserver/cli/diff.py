"""`feedserver diff build|advance|list|show|apply`: build, inspect and apply snapshot diffs.

``diff advance`` is the "next version without a dump" command: version N+1 of a snapshot from
version N plus the state store's changes since N, published as a snapshot, with its diff.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from feedserver.cli.command import bind
from feedserver.cli.snapshot import METRICS_FILE_HELP, structured_summary, write_metrics
from feedserver.config import Settings
from feedserver.errors import InvalidParameter
from feedserver.feeds.diffs.advance import advance_snapshot
from feedserver.feeds.diffs.build import build_diff, build_diffs
from feedserver.feeds.diffs.files import apply_files, load_manifest
from feedserver.feeds.diffs.manifest import ENCODER, DiffManifest
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.events.state import StateStore
from feedserver.identifiers import check_snapshot_identifier
from feedserver.metrics import Metrics
from feedserver.storage.blobs import open_blob_store
from feedserver.storage.db import connect

_FETCH_TIMEOUT = 30


def register(sub: Any) -> None:
    parser = sub.add_parser("diff", help="build, inspect and apply diffs between versions")
    cmds = parser.add_subparsers(dest="diff_command", required=True, metavar="ACTION")

    build = cmds.add_parser("build", help="build the diff N-1 -> N of each snapshot "
                                          "(skips diffs that exist)")
    build.add_argument("identifier", nargs="*", help="snapshot identifiers (default: all)")
    build.add_argument("--version", type=int, metavar="N",
                       help="diff ending at version N (default: current; one identifier)")
    build.add_argument("--base", type=int, metavar="B",
                       help="base version (default: the version before N; one identifier)")
    bind(build, cmd_build)

    advance = cmds.add_parser(
        "advance", help="build version N+1 of a snapshot from version N plus the state "
                        "store's changes since N (no dump), and its diff")
    advance.add_argument("identifier", help="snapshot identifier, e.g. enwiki_namespace_0")
    advance.add_argument("--since", type=_datetime, metavar="TIME",
                         help="RFC 3339 start (default: N's events_until or build time)")
    advance.add_argument("--until", type=_datetime, metavar="TIME",
                         help="RFC 3339 end, exclusive (default: now)")
    advance.add_argument("--metrics-file", type=Path, metavar="FILE", help=METRICS_FILE_HELP)
    bind(advance, cmd_advance)

    listing = cmds.add_parser("list", help="published diffs")
    bind(listing, cmd_list)

    show = cmds.add_parser("show", help="print a diff's manifest as JSON")
    show.add_argument("identifier")
    show.add_argument("--version", type=int, metavar="N", help="diff ending at N (default: "
                                                                "latest)")
    bind(show, cmd_show)

    apply = cmds.add_parser(
        "apply", help="apply a downloaded diff to a downloaded base version and verify the "
                      "result's content root hash")
    apply.add_argument("--base", required=True, type=Path, metavar="PATH",
                       help="base version: .zst download, NDJSON, or a folder of chunk files")
    apply.add_argument("--diff", required=True, type=Path, metavar="FILE",
                       help="the diff: .zst download or NDJSON")
    apply.add_argument("--manifest", required=True, metavar="FILE_OR_URL",
                       help="diff manifest JSON: a file, or an http(s) URL to fetch "
                            "(e.g. .../v2/diffs/{identifier}?version=N)")
    apply.add_argument("--token", help="bearer token for fetching --manifest")
    apply.add_argument("-o", "--output", type=Path, metavar="FILE",
                       help="write version N as NDJSON (default: verify only)")
    bind(apply, cmd_apply)


def _datetime(text: str) -> datetime:
    try:
        return msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None


def _summary(m: DiffManifest) -> str:
    return (f"{m.identifier} {m.base_version}->{m.version}: +{m.counts.add} ~{m.counts.update} "
            f"-{m.counts.delete}, {len(m.chunks)} chunks, {int(m.size.value)} B, "
            f"root {m.content_root_hash}")


def cmd_build(settings: Settings, *, identifier: list[str], version: int | None = None,
              base: int | None = None) -> int:
    blobs = open_blob_store(settings)
    ids = [check_snapshot_identifier(i) for i in identifier]
    if version is not None or base is not None:
        if len(ids) != 1:
            raise InvalidParameter("--version/--base need exactly one identifier")
        results = [(ids[0], build_diff(blobs, settings, ids[0], version=version,
                                       base_version=base))]
    else:
        results = list(build_diffs(blobs, settings, ids or None))
    for built_id, result in results:
        if result is None:
            print(f"{built_id}: only one version, no diff")
        else:
            manifest, built = result
            print(("built " if built else "exists ") + _summary(manifest))
    return 0


def cmd_advance(settings: Settings, *, identifier: str, since: datetime | None = None,
                until: datetime | None = None, metrics_file: Path | None = None) -> int:
    identifier = check_snapshot_identifier(identifier)
    db = connect(settings.database)
    metrics = Metrics()
    try:
        done = advance_snapshot(open_blob_store(settings), settings, StateStore(db), identifier,
                                since=since, until=until, metrics=metrics)
    finally:
        db.close()
    write_metrics(metrics, metrics_file)
    if done is None:
        print(f"{identifier}: no changes in the state store since the current version; "
              "nothing published")
        return 0
    m = done.manifest
    print(f"{identifier} version {m.version}: {m.article_count} articles from version "
          f"{done.diff.base_version} + {done.changes} changes "
          f"[{done.since.isoformat()}, {done.until.isoformat()})")
    print("built " + _summary(done.diff))
    if done.structured is not None:
        print(structured_summary(done.structured))
    return 0


def cmd_list(settings: Settings) -> int:
    store = DiffStore(open_blob_store(settings))
    for identifier in store.identifiers():
        for manifest in store.manifests(identifier):
            print(_summary(manifest))
    return 0


def cmd_show(settings: Settings, *, identifier: str, version: int | None = None) -> int:
    store = DiffStore(open_blob_store(settings))
    manifest = store.manifest(check_snapshot_identifier(identifier), version)
    sys.stdout.buffer.write(msgspec.json.format(ENCODER.encode(manifest)) + b"\n")
    return 0


def _fetch(source: str, token: str | None) -> bytes:
    if source.startswith(("http://", "https://")):
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(source, headers=headers)  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT) as resp:  # noqa: S310
                data: bytes = resp.read()
                return data
        except (urllib.error.URLError, TimeoutError) as exc:
            raise InvalidParameter(f"cannot fetch manifest {source}: {exc}") from exc
    path = Path(source)
    if not path.is_file():
        raise InvalidParameter(f"manifest {source} is not a file")
    return path.read_bytes()


def cmd_apply(settings: Settings, *, base: Path, diff: Path, manifest: str,
              token: str | None = None, output: Path | None = None) -> int:
    expected = load_manifest(_fetch(manifest, token), manifest)
    report, problems = apply_files(base, diff, expected, output)
    if problems:
        print(f"MISMATCH: {expected.identifier} {expected.base_version}->{expected.version}")
        for problem in problems:
            print(f"  {problem}")
        if output is not None:
            print(f"  {output} was not written")
        return 2
    assert report is not None
    print(f"OK: {expected.identifier} version {expected.version}: {report.article_count} "
          f"articles, content root {report.content_root_hash}"
          + (f", written to {output}" if output is not None else ""))
    return 0
