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

from feedserver.config import Settings
from feedserver.errors import InvalidParameter
from feedserver.feeds.diff_advance import advance_snapshot
from feedserver.feeds.diff_build import build_diff, build_diffs
from feedserver.feeds.diff_files import apply_files, load_manifest
from feedserver.feeds.diffs import ENCODER, DiffManifest, DiffStore
from feedserver.feeds.manifest import check_identifier
from feedserver.feeds.state import StateStore
from feedserver.storage.db import connect
from feedserver.storage.factory import open_blob_store

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
    build.set_defaults(handler=cmd_build)

    advance = cmds.add_parser(
        "advance", help="build version N+1 of a snapshot from version N plus the state "
                        "store's changes since N (no dump), and its diff")
    advance.add_argument("identifier", help="snapshot identifier, e.g. enwiki_namespace_0")
    advance.add_argument("--since", type=_datetime, metavar="TIME",
                         help="RFC 3339 start (default: N's events_until or build time)")
    advance.add_argument("--until", type=_datetime, metavar="TIME",
                         help="RFC 3339 end, exclusive (default: now)")
    advance.set_defaults(handler=cmd_advance)

    listing = cmds.add_parser("list", help="published diffs")
    listing.set_defaults(handler=cmd_list)

    show = cmds.add_parser("show", help="print a diff's manifest as JSON")
    show.add_argument("identifier")
    show.add_argument("--version", type=int, metavar="N", help="diff ending at N (default: "
                                                                "latest)")
    show.set_defaults(handler=cmd_show)

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
    apply.set_defaults(handler=cmd_apply)


def _datetime(text: str) -> datetime:
    try:
        return msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None


def _summary(m: DiffManifest) -> str:
    return (f"{m.identifier} {m.base_version}->{m.version}: +{m.counts.add} ~{m.counts.update} "
            f"-{m.counts.delete}, {len(m.chunks)} chunks, {int(m.size.value)} B, "
            f"root {m.content_root_hash}")


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    blobs = open_blob_store(settings)
    ids = [check_identifier(i) for i in args.identifier]
    if args.version is not None or args.base is not None:
        if len(ids) != 1:
            raise InvalidParameter("--version/--base need exactly one identifier")
        results = [(ids[0], build_diff(blobs, settings, ids[0], version=args.version,
                                       base_version=args.base))]
    else:
        results = list(build_diffs(blobs, settings, ids or None))
    for identifier, result in results:
        if result is None:
            print(f"{identifier}: only one version, no diff")
        else:
            manifest, built = result
            print(("built " if built else "exists ") + _summary(manifest))
    return 0


def cmd_advance(args: argparse.Namespace, settings: Settings) -> int:
    identifier = check_identifier(args.identifier)
    db = connect(settings.database)
    try:
        done = advance_snapshot(open_blob_store(settings), settings, StateStore(db), identifier,
                                since=args.since, until=args.until)
    finally:
        db.close()
    if done is None:
        print(f"{identifier}: no changes in the state store since the current version; "
              "nothing published")
        return 0
    m = done.manifest
    print(f"{identifier} version {m.version}: {m.article_count} articles from version "
          f"{done.diff.base_version} + {done.changes} changes "
          f"[{done.since.isoformat()}, {done.until.isoformat()})")
    print("built " + _summary(done.diff))
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    store = DiffStore(open_blob_store(settings))
    for identifier in store.identifiers():
        for manifest in store.manifests(identifier):
            print(_summary(manifest))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    store = DiffStore(open_blob_store(settings))
    manifest = store.manifest(check_identifier(args.identifier), args.version)
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


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    manifest = load_manifest(_fetch(args.manifest, args.token), args.manifest)
    report, problems = apply_files(args.base, args.diff, manifest, args.output)
    if problems:
        print(f"MISMATCH: {manifest.identifier} {manifest.base_version}->{manifest.version}")
        for problem in problems:
            print(f"  {problem}")
        if args.output is not None:
            print(f"  {args.output} was not written")
        return 2
    assert report is not None
    print(f"OK: {manifest.identifier} version {manifest.version}: {report.article_count} "
          f"articles, content root {report.content_root_hash}"
          + (f", written to {args.output}" if args.output is not None else ""))
    return 0
