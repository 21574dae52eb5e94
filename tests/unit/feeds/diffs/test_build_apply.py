"""Diffs on synthetic snapshots: format, streaming build, apply + verification, publication,
idempotency, retention and tamper detection."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from feedserver.config import Settings, load_settings
from feedserver.errors import IntegrityError, InvalidParameter
from feedserver.feeds.diffs.apply import DiffMismatch, VerifiedApply, apply_diff
from feedserver.feeds.diffs.build import build_diff, build_diffs
from feedserver.feeds.diffs.files import apply_files, read_lines
from feedserver.feeds.diffs.manifest import (
    ENTRY_DECODER,
    RAW_ENTRY_DECODER,
    RawAdd,
    RawDelete,
    RawEntry,
    RawUpdate,
    chunk_key,
)
from feedserver.feeds.diffs.store import DiffStore
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.formats.hashing import ENCODER, article_hash, root_hash
from feedserver.formats.wme_layout import read_range, snapshot_archive
from feedserver.ingest.dump import DumpInfo
from feedserver.models import (
    Article,
    ArticleBody,
    ArticleKey,
    DiffAdd,
    DiffDelete,
    DiffUpdate,
    Namespace,
    Project,
    Version,
)
from feedserver.storage.blobs import FilesystemBlobStore

INFO = DumpInfo(wiki="testwiki", site_name="Test", base_url="https://test.example",
                language="en", namespaces={0: ""}, schema_version="0.11", source="synthetic.xml")


def article(i: int, *, rev: int = 1, text: str = "") -> Article:
    return Article(
        name=f"Page {i}", identifier=i, namespace=Namespace(identifier=0),
        is_part_of=Project(identifier="testwiki"), version=Version(identifier=rev),
        article_body=ArticleBody(wikitext=text or f"text of page {i} " * 20),
    )


def line(a: Article) -> bytes:
    return ENCODER.encode(a)


def key(i: int) -> ArticleKey:
    return ArticleKey("testwiki", 0, i)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path / "var"), chunk_size=700,
                         retention_versions=2)


@pytest.fixture
def blobs(settings: Settings) -> FilesystemBlobStore:
    return FilesystemBlobStore(settings.blob_root)


V1 = [article(i) for i in range(1, 21)]
# v2: 3 and 4 deleted, 5 and 6 edited, 21 and 22 added, the rest unchanged.
V2 = ([a for a in V1 if a.identifier not in {3, 4, 5, 6}]
      + [article(5, rev=2, text="edited five"), article(6, rev=3, text="edited six"),
         article(21), article(22)])


# --- pure core -------------------------------------------------------------------------------


def test_entries_are_a_tagged_union_and_raw_mirrors_encode_identically() -> None:
    a = article(1)
    typed = [DiffAdd(key=key(1), article=a), DiffUpdate(key=key(1), article=a,
                                                         previous_revision=1),
             DiffDelete(key=key(1), name="Page 1", previous_revision=1)]
    raw = [RawAdd(key=key(1), article=msgspec.Raw(line(a))),
           RawUpdate(key=key(1), article=msgspec.Raw(line(a)), previous_revision=1),
           RawDelete(key=key(1), name="Page 1", previous_revision=1)]
    for t, r in zip(typed, raw, strict=True):
        assert ENCODER.encode(t) == ENCODER.encode(r)
        assert ENTRY_DECODER.decode(ENCODER.encode(r)) == t
    assert ENCODER.encode(typed[2]).startswith(b'{"op":"delete","key":{"project":"testwiki"')


def test_apply_diff_replaces_deletes_and_adds_exact_bytes() -> None:
    base = [line(article(i)) for i in (1, 2, 3)]
    new2 = line(article(2, rev=5, text="new"))
    entries: list[RawEntry] = [
               RawDelete(key=key(1), name="Page 1"),
               RawUpdate(key=key(2), article=msgspec.Raw(new2)),
               RawAdd(key=key(4), article=msgspec.Raw(line(article(4))))]
    out = list(apply_diff(iter(base), iter(entries)))
    assert out == [base[2], new2, line(article(4))]


@pytest.mark.parametrize("entries, message", [
    ([RawDelete(key=key(9), name="x")], "does not have"),
    ([RawUpdate(key=key(9), article=msgspec.Raw(line(article(9))))], "does not have"),
    ([RawAdd(key=key(1), article=msgspec.Raw(line(article(1))))], "already has"),
    ([RawDelete(key=key(1), name="x"), RawDelete(key=key(1), name="x")], "twice"),
    ([RawUpdate(key=key(1), article=msgspec.Raw(line(article(2))))], "another page"),
])
def test_apply_diff_rejects_a_diff_that_does_not_fit(entries: list[RawDelete], message: str
                                                     ) -> None:
    base = [line(article(1)), line(article(2))]
    with pytest.raises(DiffMismatch, match=message):
        list(apply_diff(base, entries))


def test_verified_apply_reports_both_roots() -> None:
    base = [line(a) for a in V1[:3]]
    entries = [RawDelete(key=key(1), name="Page 1")]
    report = VerifiedApply(base, entries).run()
    assert report.base_content_root_hash == root_hash(article_hash(b) for b in base)
    assert report.content_root_hash == root_hash(article_hash(b) for b in base[1:])
    assert (report.base_article_count, report.article_count, report.counts.delete) == (3, 2, 1)


# --- build, publish, apply ----------------------------------------------------------------------


def _two_versions(blobs: FilesystemBlobStore, settings: Settings) -> SnapshotStore:
    build_from_records(INFO, V1, blobs, settings)
    build_from_records(INFO, V2, blobs, settings)
    return SnapshotStore(blobs)


def test_build_diff_then_apply_reproduces_the_new_version(
    blobs: FilesystemBlobStore, settings: Settings, tmp_path: Path
) -> None:
    snapshots = _two_versions(blobs, settings)
    result = build_diff(blobs, settings, "testwiki_namespace_0")
    assert result is not None
    manifest, built = result
    assert built and (manifest.base_version, manifest.version) == (1, 2)
    v1, v2 = snapshots.manifest("testwiki_namespace_0", 1), snapshots.manifest(
        "testwiki_namespace_0", 2)
    assert manifest.base_content_root_hash == v1.content_root_hash
    assert manifest.content_root_hash == v2.content_root_hash
    assert (manifest.counts.add, manifest.counts.update, manifest.counts.delete) == (2, 2, 2)
    assert len(manifest.chunks) > 1  # small chunk_size: several chunks
    entries = [RAW_ENTRY_DECODER.decode(x) for c in manifest.chunks
               for x in read_lines(_download(blobs, c.key, tmp_path))]
    assert [type(e) for e in entries[:2]] == [RawDelete, RawDelete]
    assert sorted(e.key.identifier for e in entries) == [3, 4, 5, 6, 21, 22]

    # Client side: whole downloads (chunks back to back) of base and diff.
    base_file = _whole(blobs, [c.key for c in v1.chunks], tmp_path / "v1.zst")
    diff_file = _whole(blobs, [c.key for c in manifest.chunks], tmp_path / "d.zst")
    out = tmp_path / "v2.ndjson"
    report, problems = apply_files(base_file, diff_file, manifest, out)
    assert problems == [] and report is not None
    assert sorted(read_lines(out)) == sorted(snapshots.iter_lines(v2))
    # The base as WME's tar.gz (the default snapshot download) applies the same way.
    parts = [c.wme.part for c in v1.chunks if c.wme is not None]
    archive = tmp_path / "v1.tar.gz"
    archive.write_bytes(b"".join(read_range(
        snapshot_archive("testwiki_namespace_0", parts),
        lambda i, start, stop: blobs.open_range(v1.chunks[i].wme.key,  # type: ignore[union-attr]
                                                start, stop))))
    report, problems = apply_files(archive, diff_file, manifest, tmp_path / "again.ndjson")
    assert problems == [] and report is not None
    assert (tmp_path / "again.ndjson").read_bytes() == out.read_bytes()
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(IntegrityError, match=r"tar\.gz"):
        list(read_lines(truncated))


def test_build_is_idempotent_and_skips_single_versions(
    blobs: FilesystemBlobStore, settings: Settings
) -> None:
    build_from_records(INFO, V1, blobs, settings)
    assert dict(build_diffs(blobs, settings)) == {"testwiki_namespace_0": None}
    build_from_records(INFO, V2, blobs, settings)
    first = build_diff(blobs, settings, "testwiki_namespace_0")
    again = build_diff(blobs, settings, "testwiki_namespace_0")
    assert first is not None and again is not None
    assert again == (first[0], False)


def test_retention_keeps_the_newest_diffs(blobs: FilesystemBlobStore, settings: Settings
                                          ) -> None:
    for n in range(4):
        build_from_records(INFO, [*V1, article(100 + n)], blobs, settings)
        build_diff(blobs, settings, "testwiki_namespace_0")
    refs = DiffStore(blobs).refs("testwiki_namespace_0")
    assert [(r.base_version, r.version) for r in refs] == [(2, 3), (3, 4)]
    assert not list(blobs.list("diffs/testwiki_namespace_0/1-2/"))
    assert DiffStore(blobs).manifest("testwiki_namespace_0").version == 4


def test_bad_base_version_is_rejected(blobs: FilesystemBlobStore, settings: Settings) -> None:
    _two_versions(blobs, settings)
    with pytest.raises(InvalidParameter):
        build_diff(blobs, settings, "testwiki_namespace_0", version=1, base_version=2)


def test_corrupt_snapshot_is_never_diffed(blobs: FilesystemBlobStore, settings: Settings
                                          ) -> None:
    snapshots = _two_versions(blobs, settings)
    v2 = snapshots.manifest("testwiki_namespace_0", 2)
    # Replace a chunk with a well-formed chunk holding other records.
    v1 = snapshots.manifest("testwiki_namespace_0", 1)
    blobs.put_bytes(v2.chunks[0].key, blobs.get_bytes(v1.chunks[-1].key))
    with pytest.raises(IntegrityError):
        build_diff(blobs, settings, "testwiki_namespace_0")
    assert DiffStore(blobs).refs("testwiki_namespace_0") == []


def test_tampered_diff_or_wrong_base_is_detected(
    blobs: FilesystemBlobStore, settings: Settings, tmp_path: Path
) -> None:
    snapshots = _two_versions(blobs, settings)
    result = build_diff(blobs, settings, "testwiki_namespace_0")
    assert result is not None
    manifest = result[0]
    v1 = snapshots.manifest("testwiki_namespace_0", 1)
    base = _whole(blobs, [c.key for c in v1.chunks], tmp_path / "v1.zst")
    lines = [x for c in manifest.chunks for x in read_lines(_download(blobs, c.key, tmp_path))]

    # Drop a line (an update): the result keeps the old record.
    dropped = tmp_path / "dropped.ndjson"
    dropped.write_bytes(b"".join(x + b"\n" for x in lines if b'"op":"update"' not in x[:20]
                                 or b'"identifier":5}' not in x[:80]))
    out = tmp_path / "out.ndjson"
    _, problems = apply_files(base, dropped, manifest, out)
    assert any("content root hash" in p for p in problems)
    assert not out.exists() and not (tmp_path / "out.ndjson.part").exists()

    # Flip a byte inside an article body.
    flipped = tmp_path / "flipped.ndjson"
    flipped.write_bytes(b"".join(x + b"\n" for x in lines).replace(b"edited five",
                                                                   b"edited fivE"))
    _, problems = apply_files(base, flipped, manifest, out)
    assert problems and not out.exists()

    # A byte flipped in the compressed download fails its SHA-256 (and usually more).
    whole = _whole(blobs, [c.key for c in manifest.chunks], tmp_path / "d.zst")
    data = bytearray(whole.read_bytes())
    data[len(data) // 2] ^= 0x01
    whole.write_bytes(bytes(data))
    _, problems = apply_files(base, whole, manifest, None)
    assert any("not the published download" in p for p in problems)

    # The right diff on the wrong base.
    v2 = snapshots.manifest("testwiki_namespace_0", 2)
    wrong = _whole(blobs, [c.key for c in v2.chunks], tmp_path / "v2.zst")
    _, problems = apply_files(wrong, _whole(blobs, [c.key for c in manifest.chunks],
                                            tmp_path / "d2.zst"), manifest, None)
    assert problems


def test_chunk_keys_are_validated() -> None:
    assert chunk_key("testwiki_namespace_0", 1, 2, 0) == (
        "diffs/testwiki_namespace_0/1-2/testwiki_namespace_0_chunk_0.ndjson.zst")
    with pytest.raises(Exception, match="invalid"):
        chunk_key("../x", 1, 2, 0)


def _download(blobs: FilesystemBlobStore, key: str, tmp_path: Path) -> Path:
    path = tmp_path / key.replace("/", "_")
    path.write_bytes(blobs.get_bytes(key))
    return path


def _whole(blobs: FilesystemBlobStore, keys: list[str], path: Path) -> Path:
    path.write_bytes(b"".join(blobs.get_bytes(k) for k in keys))
    return path
