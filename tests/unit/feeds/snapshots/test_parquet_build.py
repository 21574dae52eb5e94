"""Parquet shards built in the snapshot build (from the sealed chunks), in ``diff advance``
and handed over offline by ``snapshot export --format parquet``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec
import pyarrow.dataset as ds
import pytest

from feedserver.cli import main
from feedserver.config import Settings, load_settings
from feedserver.feeds.diffs.advance import advance_snapshot
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_from_records, build_snapshots
from feedserver.feeds.snapshots.manifest import MANIFEST_DECODER, MANIFEST_ENCODER
from feedserver.feeds.snapshots.shards import CLEANER, clean_text
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.formats.hashing import RootHasher
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS
from tests.unit.feeds.diffs.test_advance import ID, INFO, article, change

SAMPLE = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
NS0 = "elwikivoyage_namespace_0"


def settings_for(tmp: Path, **extra: object) -> Settings:
    return load_settings(env={}, data_dir=str(tmp), chunk_size=1_000_000, parquet_enabled=True,
                         parquet_shard_size=1_000_000, parquet_row_group_size=200_000, **extra)


def shard_sums(tmp: Path, workers: int) -> tuple[list[str], str]:
    settings = settings_for(tmp)
    blobs = FilesystemBlobStore(settings.blob_root)
    manifests = {m.identifier: m for m in build_snapshots([SAMPLE], blobs, settings,
                                                          workers=workers)}
    m = manifests[NS0]
    assert m.parquet is not None and len(m.chunks) > 2 and len(m.parquet.shards) > 2
    SnapshotStore(blobs).verify(m)  # bytes, rows and per-article hashes = the NDJSON's
    return [s.sha256 for s in m.parquet.shards], m.content_root_hash


def test_shards_do_not_depend_on_the_workers(tmp_path: Path) -> None:
    # workers=2: the clean texts are computed per chunk in the build's process pool; the
    # shards are the same bytes as a build in one process.
    one = shard_sums(tmp_path / "one", 1)
    two = shard_sums(tmp_path / "two", 2)
    assert one == two


def test_text_is_the_clean_text_and_rows_are_the_records(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    blobs = FilesystemBlobStore(settings.blob_root)
    (m,) = (x for x in build_snapshots([SAMPLE], blobs, settings) if x.identifier == NS0)
    assert m.parquet is not None and m.parquet.text == CLEANER
    assert m.parquet.namespaces[6]  # the wiki's localized names, for File: links
    folder = tmp_path / "blobs" / m.parquet.shards[0].key.rsplit("/", 1)[0]
    table = ds.dataset(folder, format="parquet").to_table()
    articles = list(SnapshotStore(blobs).iter_articles(m))
    cleaner = clean_text(m.parquet.namespaces)
    assert table.column("id").to_pylist() == [str(a.identifier) for a in articles]
    assert table.column("text").to_pylist() == [cleaner(a) for a in articles]
    root = RootHasher()
    for digest in table.column("article_sha256").to_pylist():
        root.add(digest)
    assert root.hexdigest() == m.content_root_hash


def test_off_by_default_and_old_manifests_decode(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path), chunk_size=900)
    assert settings.parquet_enabled is False
    blobs = FilesystemBlobStore(settings.blob_root)
    (m,) = build_from_records(INFO, [article(i) for i in range(1, 6)], blobs, settings)
    assert m.parquet is None
    assert not [k for k in blobs.list("snapshots/") if k.endswith(".parquet")]
    # A manifest written before Parquet existed has no "parquet" key: it decodes as None.
    raw = msgspec.json.decode(MANIFEST_ENCODER.encode(m))
    raw.pop("parquet", None)
    assert MANIFEST_DECODER.decode(msgspec.json.encode(raw)).parquet is None


def test_advance_publishes_parquet_and_the_diffs(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=900,
                             parquet_enabled=True, parquet_shard_size=4_000,
                             parquet_row_group_size=1_000)
    blobs = FilesystemBlobStore(settings.blob_root)
    build_from_records(INFO, [article(i) for i in range(1, 11)], blobs, settings)
    store = SnapshotStore(blobs)
    v1 = store.manifest(ID)
    state = StateStore(SQLiteDatabase(tmp_path / "state.db"))
    after = v1.date_modified + timedelta(seconds=1)
    state.apply_many([change(article(2, rev=5, text="edited two"), "edit", after),
                      change(article(3, rev=1), "delete", after),
                      change(article(11, rev=7), "create", after)])
    done = advance_snapshot(blobs, settings, state, ID, until=after + timedelta(seconds=1))
    assert done is not None and done.manifest.parquet is not None
    assert done.manifest.parquet.namespaces == v1.parquet.namespaces if v1.parquet else False
    store.verify(done.manifest)
    assert done.diff.parquet is not None and done.diff.parquet.rows == 3


def test_export_copies_or_converts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path), chunk_size=900,
                             parquet_shard_size=4_000, parquet_row_group_size=1_000)
    blobs = FilesystemBlobStore(settings.blob_root)
    records = [article(i) for i in range(1, 21)]
    build_from_records(INFO, records, blobs, settings)  # without Parquet
    build_from_records(INFO, records, blobs,
                       msgspec.structs.replace(settings, parquet_enabled=True))
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FEEDSERVER_PARQUET_SHARD_SIZE", "4000")
    monkeypatch.setenv("FEEDSERVER_PARQUET_ROW_GROUP_SIZE", "1000")
    out = {}
    for version in (1, 2):
        folder = tmp_path / f"out{version}"
        assert main(["snapshot", "export", ID, "--version", str(version), "--format",
                     "parquet", "-o", str(folder)]) == 0
        manifest = MANIFEST_DECODER.decode((folder / "_manifest.json").read_bytes())
        assert manifest.parquet is not None
        assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(
            s.filename for s in manifest.parquet.shards)
        out[version] = ds.dataset(folder, format="parquet").to_table().drop_columns([])
    # Converted (v1) and copied (v2) hand-overs hold the same rows.
    assert out[1].equals(out[2])
    assert out[1].column("id").to_pylist() == [str(a.identifier) for a in records]
    assert main(["snapshot", "export", ID, "--format", "parquet", "-o", "-"]) == 1
