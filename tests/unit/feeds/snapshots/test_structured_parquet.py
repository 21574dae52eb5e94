"""Parquet shards of Structured Contents versions: built from the sealed Structured Contents
chunks in the same build (and by ``diff advance``), verified, exported; and the article shards
taking their clean texts from them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import msgspec
import pyarrow.dataset as ds
import pytest

from feedserver.cli import main
from feedserver.config import Settings, load_settings
from feedserver.errors import IntegrityError
from feedserver.feeds.diffs.advance import advance_snapshot
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_dumps, build_from_records
from feedserver.feeds.snapshots.manifest import MANIFEST_DECODER, STRUCTURED_PREFIX
from feedserver.feeds.snapshots.sealing import SealedChunk, SealedSnapshot
from feedserver.feeds.snapshots.shards import CLEANER, clean_text
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.feeds.snapshots.structured_parquet import StructuredTexts
from feedserver.formats.hashing import RootHasher
from feedserver.ingest.structured import StructuredContent, structured_content
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS
from tests.unit.feeds.diffs.test_advance import ID, INFO, article, change

SAMPLE = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
NS0 = "elwikivoyage_namespace_0"
DECODER = msgspec.json.Decoder(StructuredContent)


def settings_for(tmp: Path, **extra: object) -> Settings:
    return load_settings(env={}, data_dir=str(tmp), chunk_size=1_000_000, parquet_enabled=True,
                         parquet_shard_size=1_000_000, parquet_row_group_size=200_000, **extra)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, FilesystemBlobStore]:
    tmp = tmp_path_factory.mktemp("structured-parquet")
    settings = settings_for(tmp)
    blobs = FilesystemBlobStore(settings.blob_root)
    build_dumps([SAMPLE], blobs, settings, workers=2)
    return settings, blobs


def test_rows_are_the_structured_version(real: tuple[Settings, FilesystemBlobStore]) -> None:
    _, blobs = real
    store = SnapshotStore(blobs, STRUCTURED_PREFIX)
    m = store.manifest(NS0)
    assert m.parquet is not None and m.parquet.schema == "structured/1"
    assert len(m.parquet.shards) > 1 and m.parquet.rows == m.article_count
    assert m.parquet.text == CLEANER and m.parquet.namespaces[6]
    assert all(s.key.startswith(f"{STRUCTURED_PREFIX}/{NS0}/{m.version}/parquet/")
               for s in m.parquet.shards)
    store.verify(m)  # bytes, row counts, and record_sha256 -> the content root hash
    records = [DECODER.decode(line) for line in store.iter_lines(m)]
    folder = blobs.root / m.parquet.shards[0].key.rsplit("/", 1)[0]
    table = ds.dataset(folder, format="parquet").to_table(
        columns=["id", "title", "text", "namespace", "record_sha256"])
    assert table.column("id").to_pylist() == [str(r.identifier) for r in records]
    assert table.column("title").to_pylist() == [r.name for r in records]
    assert set(table.column("namespace").to_pylist()) == {0}
    # The text column is the clean text of each page, as the article shards have it.
    articles = {a.identifier: a for a in SnapshotStore(blobs).iter_articles(
        SnapshotStore(blobs).manifest(NS0))}
    cleaner = clean_text(m.parquet.namespaces)
    assert table.column("text").to_pylist() == [cleaner(articles[r.identifier])
                                                 for r in records]
    root = RootHasher()
    for digest in table.column("record_sha256").to_pylist():
        root.add(digest)
    assert root.hexdigest() == m.content_root_hash


def test_article_shards_reuse_the_structured_texts(
        real: tuple[Settings, FilesystemBlobStore]) -> None:
    # The article shards of the same build hold the same text per page: taken from the
    # Structured Contents, not parsed a second time (the build test of the article shards
    # checks them against clean_text page by page).
    _, blobs = real
    articles = SnapshotStore(blobs).manifest(NS0)
    structured = SnapshotStore(blobs, STRUCTURED_PREFIX).manifest(NS0)
    assert articles.parquet is not None and structured.parquet is not None
    assert articles.parquet.text == structured.parquet.text
    assert articles.parquet.namespaces == structured.parquet.namespaces

    def texts(m_key: str) -> dict[str, str]:
        folder = blobs.root / m_key.rsplit("/", 1)[0]
        t = ds.dataset(folder, format="parquet").to_table(columns=["id", "text"])
        return dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist(), strict=True))

    assert texts(articles.parquet.shards[0].key) == texts(structured.parquet.shards[0].key)


def test_lent_texts_stop_at_the_first_record_out_of_step(tmp_path: Path) -> None:
    # A Structured Contents record that is not the article's (another page or revision)
    # never lends its text: from there on the texts are parsed again.
    settings = load_settings(env={}, data_dir=str(tmp_path), chunk_size=900)
    blobs = FilesystemBlobStore(settings.blob_root)
    build_from_records(INFO, [article(i) for i in range(1, 6)], blobs, settings)
    m = SnapshotStore(blobs, STRUCTURED_PREFIX).manifest(ID)
    paths = []
    for chunk in m.chunks:
        path = tmp_path / chunk.key.rsplit("/", 1)[1]
        path.write_bytes(blobs.get_bytes(chunk.key))
        paths.append(SealedChunk(path=str(path), article_count=chunk.article_count,
                                 size=chunk.size, uncompressed_size=chunk.uncompressed_size,
                                 sha256=chunk.sha256, offset=chunk.offset))
    sealed = SealedSnapshot(namespace=0, chunks=paths, article_count=m.article_count,
                            redirect_count=0, redirects_dropped=0, size=0,
                            uncompressed_size=0, content_root_hash="", sha256="")
    lend = StructuredTexts(sealed)
    want = structured_content(article(1), namespaces=INFO.namespaces).text
    assert lend(article(1)) == want and want
    assert lend(article(2, rev=9)) is None  # another revision of page 2
    assert lend(article(3)) is None  # and no more lending after that
    assert (lend.reused, lend.missed) == (1, 2)


def test_advance_publishes_structured_shards(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=900,
                             parquet_enabled=True, parquet_shard_size=4_000,
                             parquet_row_group_size=1_000)
    blobs = FilesystemBlobStore(settings.blob_root)
    build_from_records(INFO, [article(i) for i in range(1, 11)], blobs, settings)
    v1 = SnapshotStore(blobs).manifest(ID)
    state = StateStore(SQLiteDatabase(tmp_path / "state.db"))
    after = v1.date_modified + timedelta(seconds=1)
    state.apply_many([change(article(2, rev=5, text="edited two"), "edit", after),
                      change(article(3, rev=1), "delete", after),
                      change(article(11, rev=7), "create", after)])
    done = advance_snapshot(blobs, settings, state, ID, until=after + timedelta(seconds=1))
    assert done is not None and done.structured is not None
    m = done.structured
    assert m.parquet is not None and m.parquet.schema == "structured/1"
    assert m.parquet.rows == m.article_count == 10
    SnapshotStore(blobs, STRUCTURED_PREFIX).verify(m)
    folder = blobs.root / m.parquet.shards[0].key.rsplit("/", 1)[0]
    table = ds.dataset(folder, format="parquet").to_table(columns=["id", "text"])
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(),
                     strict=True))
    assert "3" not in texts and "edited two" in texts["2"] and "11" in texts


def test_verify_and_export_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
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
    assert main(["snapshot", "verify", ID, "--structured"]) == 0
    assert "Parquet shards" in capsys.readouterr().out
    out = {}
    for version in (1, 2):
        folder = tmp_path / f"out{version}"
        assert main(["snapshot", "export", ID, "--structured", "--version", str(version),
                     "--format", "parquet", "-o", str(folder)]) == 0
        manifest = MANIFEST_DECODER.decode((folder / "_manifest.json").read_bytes())
        assert manifest.parquet is not None and manifest.parquet.schema == "structured/1"
        assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(
            s.filename for s in manifest.parquet.shards)
        out[version] = ds.dataset(folder, format="parquet").to_table()
    # Converted (v1, published without Parquet) and copied (v2) hand-overs: the same rows.
    assert out[1].equals(out[2])
    assert out[1].column("id").to_pylist() == [str(a.identifier) for a in records]
    # A damaged shard fails verification (exit 1), as an article shard does.
    m = SnapshotStore(blobs, STRUCTURED_PREFIX).manifest(ID)
    assert m.parquet is not None
    path = blobs.root / m.parquet.shards[0].key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        SnapshotStore(blobs, STRUCTURED_PREFIX).verify(m)
    assert main(["snapshot", "verify", ID, "--structured"]) == 1


def test_article_texts_are_not_parsed_twice(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # With Structured Contents on, the article shards' clean-text function is never called,
    # neither in a build from dumps nor in an advance (there only the changed pages are
    # parsed: by the Structured Contents step, and for the diff's Parquet rows). Without
    # them, it runs once per page.
    from feedserver.feeds.snapshots import shards

    calls = []
    real = shards.structured_content

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shards, "structured_content", counting)
    settings = load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=900,
                             parquet_enabled=True, parquet_shard_size=4_000,
                             parquet_row_group_size=1_000)
    blobs = FilesystemBlobStore(settings.blob_root)
    build_from_records(INFO, [article(i) for i in range(1, 11)], blobs, settings)
    assert calls == []
    v1 = SnapshotStore(blobs).manifest(ID)
    state = StateStore(SQLiteDatabase(tmp_path / "state.db"))
    after = v1.date_modified + timedelta(seconds=1)
    state.apply_many([change(article(2, rev=5, text="edited two"), "edit", after),
                      change(article(11, rev=7), "create", after)])
    done = advance_snapshot(blobs, settings, state, ID, until=after + timedelta(seconds=1))
    assert done is not None and done.manifest.parquet is not None
    assert done.diff.parquet is not None and len(calls) == done.diff.parquet.rows == 2
    SnapshotStore(blobs).verify(done.manifest)
    # The texts are still the clean texts, page by page.
    folder = blobs.root / done.manifest.parquet.shards[0].key.rsplit("/", 1)[0]
    table = ds.dataset(folder, format="parquet").to_table(columns=["text"])
    monkeypatch.setattr(shards, "structured_content", real)
    cleaner = clean_text(done.manifest.parquet.namespaces)
    assert table.column("text").to_pylist() == [
        cleaner(a) for a in SnapshotStore(blobs).iter_articles(done.manifest)]
    # Without Structured Contents the article shards parse every page themselves.
    monkeypatch.setattr(shards, "structured_content", counting)
    off = msgspec.structs.replace(settings, structured_namespaces=[])
    calls.clear()
    build_from_records(INFO, [article(i) for i in range(1, 11)], blobs, off)
    assert len(calls) == 10
