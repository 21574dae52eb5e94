"""Next snapshot version from the previous one plus the state store's changes, without a dump.

``advance_snapshot`` reads version N of an identifier and every state-store row of its project
and namespace whose last change falls in ``[since, until)`` — ``since`` is N's
``events_until`` (or, for a version built from a dump, its ``date_modified``). Version N+1 is
N with those rows applied:

- a deleted row drops the page (a page moved to another namespace is tombstoned here too);
- a live row replaces the page when its revision is newer than N's (or equal with a
  visibility change), and is added when N lacks the page;
- a row older than N's record (the state store lagging the dump) changes nothing.

Redirects are not carried by page_change events, so a replaced page keeps N's ``redirects[]``
when the new record has none. N+1 goes through the normal snapshot path (a staged page index,
sealing, atomic publish) with ``events_until = until``; its lines are staged as raw bytes, so
unchanged records stay byte-identical to N's, and the diff N → N+1 is built right
after. Memory stays flat: changes are spilled to a scratch SQLite file, only their page ids
are held in memory, and N is streamed.

When the namespace is in ``settings.structured_namespaces``, the Structured Contents version
advances from the same spilled changes (``diffs.structured``): only changed pages are parsed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from feedserver.config import Settings
from feedserver.errors import Conflict, InvalidParameter
from feedserver.feeds.diffs.apply import probe
from feedserver.feeds.diffs.build import build_diff
from feedserver.feeds.diffs.changes import CHANGES_SCHEMA, merged, spill_changes
from feedserver.feeds.diffs.manifest import DiffManifest
from feedserver.feeds.diffs.structured import Prepared, prepare_structured
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.scratch import scratch_db, scratch_dir
from feedserver.feeds.snapshots import sealing, staging, wme
from feedserver.feeds.snapshots.chunks import ChunkWriter
from feedserver.feeds.snapshots.extras import build_extras
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.feeds.snapshots.publish import publish
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.feeds.snapshots.structured_parquet import sealed_lines
from feedserver.identifiers import SNAPSHOT_RE, check_snapshot_identifier
from feedserver.ingest.dump import DumpInfo
from feedserver.metrics import Metrics
from feedserver.storage.blobs import BlobStore

_BATCH = 1000


class Advanced(msgspec.Struct, kw_only=True):
    """What one ``advance_snapshot`` did."""

    manifest: Manifest  # version N+1
    diff: DiffManifest  # N -> N+1
    since: datetime
    until: datetime
    changes: int  # state-store rows seen in the window
    structured: Manifest | None = None  # the Structured Contents version N+1, if built


def _stage(conn: sqlite3.Connection, lines: Iterator[bytes], folder: Path, namespace: int,
           settings: Settings) -> None:
    """Stage raw lines the way ``staging.stage_records`` stages records (chunk files + page
    index), so sealing and publishing run unchanged, without re-encoding any line."""
    writer = ChunkWriter(folder, chunk_size=settings.chunk_size, level=settings.zstd_level,
                         prefix="p0")
    pages: list[tuple[int, int, int, int, int, int, str]] = []
    conn.execute("BEGIN")
    try:
        for line in lines:
            page = probe(line)
            seq, number, _ = writer.add(namespace, msgspec.Raw(line))
            pages.append((0, namespace, seq, number, page.identifier, page.revision or 0,
                          page.name))
            if len(pages) >= _BATCH:
                conn.executemany(_PAGES, pages)
                pages.clear()
        conn.executemany(_PAGES, pages)
        conn.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?)", [
            (0, c.namespace, c.seq, c.path, c.hashes_path, c.article_count,
             c.uncompressed_size) for c in writer.close()])
        conn.execute("COMMIT")
    except BaseException:
        writer.abort()
        conn.execute("ROLLBACK")
        raise


_PAGES = "INSERT INTO pages (part, ns, seq, line, id, rev, name) VALUES (?,?,?,?,?,?,?)"


def _info(manifest: Manifest, wiki: str, source: str) -> DumpInfo:
    project = manifest.is_part_of
    return DumpInfo(
        wiki=wiki, site_name=project.name or "", base_url=project.url or "",
        language=manifest.in_language.identifier if manifest.in_language else "",
        namespaces={manifest.namespace.identifier: manifest.namespace.name or ""},
        schema_version=(manifest.source.schema_versions or [""])[-1], source=source,
    )


def advance_snapshot(
    blobs: BlobStore, settings: Settings, state: StateStore, identifier: str, *,
    since: datetime | None = None, until: datetime | None = None,
    metrics: Metrics | None = None,
) -> Advanced | None:
    """Publish version N+1 of ``identifier`` from its current version N plus the state
    store's changes in ``[since, until)``, and the diff N → N+1 (and the Structured Contents
    version N+1, for ``settings.structured_namespaces``). None when nothing changed."""
    wme.check_settings(settings)
    match = SNAPSHOT_RE.match(check_snapshot_identifier(identifier))
    assert match is not None
    wiki = match.group(1)
    snapshots = SnapshotStore(blobs)
    base = snapshots.manifest(identifier)
    since = since or base.events_until or base.date_modified
    until = until or datetime.now(UTC)
    if until <= since:
        raise InvalidParameter(f"nothing to cover: until {until.isoformat()} is not after "
                               f"since {since.isoformat()}")
    project, namespace = base.is_part_of.identifier, base.namespace.identifier
    with scratch_dir(settings.data_path, "snapshot-update-") as tmp:
        folder = Path(tmp)
        changes = scratch_db(folder / "changes.sqlite")
        index = staging.open_db(folder / "index.sqlite")
        prepared: Prepared | None = None
        try:
            changes.execute(CHANGES_SCHEMA)
            changed = spill_changes(changes, state, project, namespace, since, until)
            if not changed:
                return None
            _stage(index, merged(changes, snapshots.iter_lines(base), changed), folder,
                   namespace, settings)
            if index.execute("SELECT count(*) FROM pages").fetchone()[0] == 0:
                raise Conflict(f"applying the changes would leave {identifier} empty; "
                               "not published")
            sealing.prepare(index)
            sealed = sealing.seal_namespace(index, namespace, folder,
                                            level=settings.zstd_level, dropped=0)
            source = (f"{identifier} version {base.version} + events "
                      f"[{since.isoformat()}, {until.isoformat()})")
            info = _info(base, wiki, source)
            # The clean text gets the namespace names N's was given: same record, same text.
            names = base.parquet.namespaces if base.parquet is not None else info.namespaces
            # Structured Contents N+1 first (only the changed pages parsed), so that the
            # article shards of N+1 take their texts from it instead of parsing every page.
            if namespace in settings.structured_namespaces:
                prepared = prepare_structured(
                    blobs, settings, changes, changed, base=base, info=info, names=names,
                    article_lines=sealed_lines(sealed), folder=folder / "structured",
                    metrics=metrics)
            extras = build_extras(sealed, identifier=identifier, folder=folder,
                                  settings=settings, namespaces=names,
                                  known=prepared.texts() if prepared is not None else None)
            new = publish(blobs, sealed, identifier=identifier, info=info, sources=[info],
                          lock_dir=settings.data_path / "locks",
                          retention=settings.retention_versions, events_until=until,
                          extras=extras)
            # The diff first: the article feed is complete before Structured Contents start.
            built = build_diff(blobs, settings, identifier, version=new.version,
                               base_version=base.version)
            assert built is not None
            structured = None
            if prepared is not None:
                structured = prepared.publish(blobs, settings, new)
        finally:
            if prepared is not None:
                prepared.close()
            changes.close()
            index.close()
    return Advanced(manifest=new, diff=built[0], since=since, until=until,
                    changes=len(changed), structured=structured)
