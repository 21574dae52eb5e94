"""Build snapshot versions from dumps (``build_dumps``, ``build_snapshots``) or records
(``build_from_records``).

A build runs in three steps, all in a scratch folder under ``data_dir/tmp`` that is removed
whatever happens (if the process is killed, by the next build: ``feeds.scratch``): *stage*
(records to zstd chunks + a SQLite page index; one process per dump file with
``workers > 1``), *seal* (dedupe, attach redirects, hash), the optional formats from the sealed
chunks (``extras``: with ``settings.wme_archives`` the WME tar.gz parts, ``feeds.snapshots.wme``;
Parquet), *publish* (upload, then the pointer). The namespaces in
``settings.structured_namespaces`` also get a Structured Contents version, staged from the same
records in the same processes (``structured``), sealed BEFORE the articles (so that the
article Parquet shards take their clean texts from them: ``structured_parquet``) and published
after them (with their own Parquet shards when enabled). See ``docs/snapshots.md``.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import msgspec
from tqdm import tqdm

from feedserver.config import Settings
from feedserver.feeds.scratch import scratch_dir
from feedserver.feeds.snapshots import sealing, staging, wme
from feedserver.feeds.snapshots.extras import build_extras
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.feeds.snapshots.publish import publish
from feedserver.feeds.snapshots.structured import (
    StructuredStaging,
    merge_parts,
    publish_sealed,
    seal_all,
)
from feedserver.feeds.snapshots.structured_parquet import StructuredTexts
from feedserver.identifiers import check_project, snapshot_identifier
from feedserver.ingest.dump import DumpInfo
from feedserver.ingest.multistream import DumpSlice, split_multistream
from feedserver.metrics import Metrics
from feedserver.models import Article, Redirect
from feedserver.storage.blobs import BlobStore

__all__ = ["Built", "build_dumps", "build_from_records", "build_snapshots"]


class Built(msgspec.Struct, kw_only=True):
    """The versions one build published: articles, and Structured Contents."""

    articles: list[Manifest]
    structured: list[Manifest] = msgspec.field(default_factory=list)


def _scratch(settings: Settings) -> AbstractContextManager[Path]:
    # Locked while this build runs; the scratch of killed builds is swept (feeds/scratch.py).
    return scratch_dir(settings.data_path, "snapshot-build-")


def build_snapshots(
    dumps: Sequence[Path],
    blobs: BlobStore,
    settings: Settings,
    *,
    wiki: str | None = None,
    namespaces: set[int] | None = None,
    progress: bool = False,
    workers: int = 1,
) -> list[Manifest]:
    """Build and publish one new version per namespace found in ``dumps``; the article
    versions are returned (``build_dumps`` returns the Structured Contents ones too)."""
    return build_dumps(dumps, blobs, settings, wiki=wiki, namespaces=namespaces,
                       progress=progress, workers=workers).articles


def build_dumps(
    dumps: Sequence[Path],
    blobs: BlobStore,
    settings: Settings,
    *,
    wiki: str | None = None,
    namespaces: set[int] | None = None,
    progress: bool = False,
    workers: int = 1,
    metrics: Metrics | None = None,
) -> Built:
    """Build and publish one new version per namespace found in ``dumps``, and a Structured
    Contents version of each namespace in ``settings.structured_namespaces`` (its parse
    outcome counted in ``metrics``)."""
    wme.check_settings(settings)
    if wiki is not None:
        check_project(wiki)
    paths = [Path(p) for p in dumps]
    with _scratch(settings) as tmp:
        folder = Path(tmp)
        conn = staging.open_db(folder / "index.sqlite")
        structured = StructuredStaging.of(settings, folder)
        try:
            bar = _progress(paths, progress)
            units = _plan(paths, workers)
            # One pool for staging and sealing: forked once, reused for the chunk rewrites and
            # the clean texts of Parquet shards (which use every worker even for one file).
            size = workers if settings.parquet_enabled else min(workers, len(units))
            pool = _pool(size) if workers > 1 and size > 1 else None
            try:
                try:
                    if pool is not None and len(units) > 1:
                        results = _stage_parallel(pool, units, folder, settings, wiki,
                                                  namespaces, bar, structured)
                        for result in results:
                            staging.merge_part(conn, result)
                    else:
                        results = []
                        for part, path in enumerate(paths):
                            results.append(staging.stage_dump(
                                path, folder, part=part, chunk_size=settings.chunk_size,
                                level=settings.zstd_level, wiki=wiki, namespaces=namespaces,
                                conn=conn, tee=structured))
                            if bar is not None:
                                bar.update(path.stat().st_size)
                finally:
                    if bar is not None:
                        bar.close()
                info = staging.check_same_wiki(results)
                # The slices of one multistream file are one source.
                sources = list({r.info.source: r.info for r in results}.values())
                return _seal_both(conn, folder, blobs, settings, info, sources, structured,
                                  [r.part for r in results], pool=pool, metrics=metrics)
            finally:
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            conn.close()


def build_from_records(
    info: DumpInfo,
    records: Iterable[Article | Redirect],
    blobs: BlobStore,
    settings: Settings,
) -> list[Manifest]:
    """Build from an already-open record stream (tests, other producers); Structured
    Contents as ``build_dumps`` does; returns the article versions."""
    wme.check_settings(settings)
    check_project(info.wiki)
    with _scratch(settings) as tmp:
        folder = Path(tmp)
        conn = staging.open_db(folder / "index.sqlite")
        structured = StructuredStaging.of(settings, folder)
        try:
            staging.stage_records(info, records, conn, folder, part=0,
                                  chunk_size=settings.chunk_size, level=settings.zstd_level,
                                  tee=structured(info, 0) if structured is not None else None)
            return _seal_both(conn, folder, blobs, settings, info, [info], structured,
                              [0]).articles
        finally:
            conn.close()


def _seal_both(
    conn: sqlite3.Connection, folder: Path, blobs: BlobStore, settings: Settings,
    info: DumpInfo, sources: list[DumpInfo], structured: StructuredStaging | None,
    parts: list[int], *, pool: ProcessPoolExecutor | None = None,
    metrics: Metrics | None = None,
) -> Built:
    """Seal the Structured Contents first (so that the article Parquet shards take their
    clean texts from them instead of parsing every page again), then seal and publish the
    articles, then publish the Structured Contents (which name the article versions)."""
    if structured is None:
        return Built(articles=_seal_and_publish(conn, folder, blobs, settings, info, sources,
                                                pool=pool))
    mapper = pool.map if pool is not None else None
    sconn = merge_parts(structured, parts, metrics=metrics)
    try:
        sfolder = Path(structured.folder)
        sealed = seal_all(sconn, sfolder, settings, mapper=mapper)
        articles = _seal_and_publish(conn, folder, blobs, settings, info, sources, pool=pool,
                                     texts=sealed)
        return Built(articles=articles, structured=publish_sealed(
            sconn, sealed, sfolder, blobs, settings, info, sources,
            {m.namespace.identifier: m.version for m in articles}))
    finally:
        sconn.close()


def _seal_and_publish(
    conn: sqlite3.Connection, folder: Path, blobs: BlobStore, settings: Settings,
    info: DumpInfo, sources: list[DumpInfo], pool: ProcessPoolExecutor | None = None,
    texts: dict[int, sealing.SealedSnapshot] | None = None,
) -> list[Manifest]:
    sealing.prepare(conn)
    dropped = sealing.dropped_redirects(conn)
    manifests = []
    for ns in sealing.namespaces(conn):
        identifier = snapshot_identifier(info.wiki, ns)
        sealed = sealing.seal_namespace(conn, ns, folder, level=settings.zstd_level,
                                        dropped=dropped.get(ns, 0),
                                        mapper=pool.map if pool is not None else None)
        known = (texts or {}).get(ns)
        extras = build_extras(sealed, identifier=identifier, folder=folder, settings=settings,
                              namespaces=info.namespaces,
                              mapper=pool.map if pool is not None else None,
                              part_mapper=pool.map if pool is not None else None,
                              known=StructuredTexts(known) if known is not None else None)
        manifests.append(publish(
            blobs, sealed, identifier=identifier, info=info, sources=sources,
            lock_dir=settings.data_path / "locks", retention=settings.retention_versions,
            extras=extras,
        ))
    return manifests


Unit = tuple[Path, DumpSlice | None]


def _plan(paths: list[Path], workers: int) -> list[Unit]:
    """Work units in file order: whole files, and with several workers each multistream bz2
    file cut into ``workers`` slices of whole streams (so one big file uses every worker)."""
    units: list[Unit] = []
    for path in paths:
        pieces = split_multistream(path, workers) if workers > 1 and path.is_file() else []
        if pieces:
            units.extend((path, piece) for piece in pieces)
        else:
            units.append((path, None))
    return units


def _unit_size(unit: Unit) -> int:
    path, piece = unit
    return piece.end - piece.start if piece is not None else path.stat().st_size


# Imported once by the fork server (``_pool``), so that every worker forked from it starts with
# the build's modules loaded (this module imports all of them).
_PRELOAD = ["__main__", __name__]


def _pool(workers: int) -> ProcessPoolExecutor:
    """The build's worker pool, started by a fork server (a single-threaded process started
    once per build process, with the build modules preloaded, that forks the workers):
    forking the build process itself is unsafe once it has threads (Python 3.12+ warns), and
    ``spawn`` would import the modules again in every worker of every build. ``spawn`` where
    there is no fork server (not POSIX). See ``docs/snapshots.md``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(max_workers=workers,
                                   mp_context=multiprocessing.get_context("spawn"))
    server = multiprocessing.get_context("forkserver")
    server.set_forkserver_preload(_PRELOAD)
    return ProcessPoolExecutor(max_workers=workers, mp_context=server)


def _stage_parallel(
    pool: ProcessPoolExecutor, units: list[Unit], folder: Path, settings: Settings,
    wiki: str | None, namespaces: set[int] | None, bar: tqdm[Any] | None,
    structured: StructuredStaging | None,
) -> list[staging.StageResult]:
    futures: list[Future[staging.StageResult]] = [
        pool.submit(staging.stage_dump, path, folder, part=part,
                    chunk_size=settings.chunk_size, level=settings.zstd_level, wiki=wiki,
                    namespaces=namespaces, db_path=folder / f"part{part}.sqlite",
                    piece=piece, tee=structured)
        for part, (path, piece) in enumerate(units)
    ]
    try:
        results = []
        for unit, future in zip(units, futures, strict=True):
            results.append(future.result())
            if bar is not None:
                bar.update(_unit_size(unit))
        return results
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _progress(paths: list[Path], enabled: bool) -> tqdm[Any] | None:
    if not enabled:
        return None
    total = sum(p.stat().st_size for p in paths if p.is_file())
    return tqdm(total=total, unit="B", unit_scale=True, desc="dumps read")
